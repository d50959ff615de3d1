//! A fast streaming content hash for verifying transferred bytes against a local file.
//! Not cryptographic: four independent multiply-rotate lanes so it runs near memory speed
//! and the load generator does not become the bottleneck when it verifies content.

use std::io::Read;
use std::path::Path;

const K: [u64; 4] =
    [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0x27D4_EB2F_1656_67C5];

/// Streaming hasher: `update` may be called with chunks split anywhere.
#[derive(Clone)]
pub struct Hasher {
    lanes: [u64; 4],
    tail: [u8; 32],
    tail_len: usize,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher { lanes: K, tail: [0; 32], tail_len: 0, len: 0 }
    }
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 32 {
                return;
            }
            let block = self.tail;
            self.block(&block);
            self.tail_len = 0;
        }
        let mut chunks = data.chunks_exact(32);
        for block in &mut chunks {
            self.block(block);
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    #[inline(always)]
    fn block(&mut self, b: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *lane = (lane.rotate_left(29) ^ u64::from_le_bytes(w)).wrapping_mul(K[i] | 1);
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut h = self.len.wrapping_mul(K[0]);
        for (i, lane) in self.lanes.iter().enumerate() {
            h = (h ^ lane.rotate_left(i as u32 * 16)).wrapping_mul(K[3]).rotate_left(31);
        }
        for &byte in &self.tail[..self.tail_len] {
            h = (h ^ u64::from(byte)).wrapping_mul(K[1]);
        }
        h ^ (h >> 33)
    }
}

/// Length and digest of a local file (the reference the transfers are checked against).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((h.len, h.finish()));
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;

    #[test]
    fn split_points_do_not_change_the_digest() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut whole = Hasher::default();
        whole.update(&data);
        for split in [0, 1, 31, 32, 33, 500, 999] {
            let mut h = Hasher::default();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), whole.finish(), "split at {split}");
        }
        let mut other = Hasher::default();
        other.update(&data[1..]);
        assert_ne!(other.finish(), whole.finish());
    }
}
