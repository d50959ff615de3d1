//! Sending what a TFTP transfer's `poll_transmit` hands out, a window at a time: DATA
//! payloads are read behind their headers into pooled buffers (one preadv per run of
//! consecutive blocks), then equal-sized blocks leave in UDP GSO sends and the rest in
//! SENDMSG SQEs linked and submitted together, so a window costs a few syscalls.

use super::buf_pool::BufPool;
use super::ops::{self, SharedFd};
use super::udp_msg::{self, SendSpec};
use crate::tftp::wire::{write_data_header, DATA_HEADER_LEN};
use crate::tftp::Transmit;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use tracing::debug;

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: the whole must fit one IP datagram's length field.
const GSO_MAX_BYTES: usize = 65_000;

/// Where DATA payload comes from.
#[derive(Debug)]
pub enum Source {
    /// The file itself (octet mode): offsets are file offsets.
    File(SharedFd),
    /// The netascii-encoded file held in memory: offsets index the encoded bytes.
    Memory(Rc<Vec<u8>>),
}

/// A transfer's socket and buffers.
#[derive(Debug)]
pub struct Link {
    /// The transfer's own socket (its TID).
    pub sock: SharedFd,
    /// The worker's datagram buffers.
    pub pool: Rc<BufPool>,
    /// GSO still worth trying; off after the first send the kernel refused (the path MTU
    /// is below a segment, or the device cannot segment), then per-datagram sends.
    gso: bool,
    /// One window's datagrams, reused from window to window.
    bufs: Vec<Vec<u8>>,
    /// Destination and kind of each entry of `bufs`.
    outs: Vec<Out>,
}

#[derive(Debug, Clone, Copy)]
struct Out {
    to: SocketAddr,
    data: bool,
}

/// Reading file bytes for DATA failed; the transfer is to be aborted.
#[derive(Debug)]
pub struct ReadFailed(pub io::Error);

impl Link {
    /// A link over `sock` drawing buffers from `pool`.
    pub fn new(sock: SharedFd, pool: Rc<BufPool>) -> Link {
        Link { sock, pool, gso: true, bufs: Vec::new(), outs: Vec::new() }
    }

    /// Builds, fills and sends `items` (one drain of `poll_transmit`, in order).
    pub async fn send(&mut self, items: &[Transmit], source: Option<&Source>) -> Result<(), ReadFailed> {
        let mut bufs = std::mem::take(&mut self.bufs);
        self.outs.clear();
        for item in items {
            let mut buf = self.pool.take();
            match *item {
                Transmit::Datagram { to, packet } => {
                    buf.extend_from_slice(packet.as_bytes());
                    self.outs.push(Out { to, data: false });
                }
                Transmit::Data { to, block, .. } => {
                    buf.resize(DATA_HEADER_LEN, 0);
                    // Cannot fail: the buffer was just sized to hold the header.
                    let _ = write_data_header(&mut buf, block);
                    self.outs.push(Out { to, data: true });
                }
            }
            bufs.push(buf);
        }
        let filled = match source {
            Some(src) => fill(src, &mut bufs, items, self.pool.capacity()).await,
            None => Ok(()),
        };
        if filled.is_ok() {
            bufs = self.transmit(bufs).await;
        }
        self.pool.give_all(&mut bufs);
        self.bufs = bufs;
        filled
    }

    /// Sends every datagram of `bufs`; returns the buffers once all sends completed.
    async fn transmit(&mut self, bufs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let groups = plan_groups(&bufs, &self.outs, self.gso);
        let (bufs, gso_failed) = self.submit(bufs, &groups).await;
        if !gso_failed {
            return bufs;
        }
        debug!("UDP GSO refused; sending datagrams one by one from now on");
        self.gso = false;
        let groups = plan_groups(&bufs, &self.outs, false);
        self.submit(bufs, &groups).await.0
    }

    /// Submits one SENDMSG per group, linked so they go out in order, and awaits them all.
    /// Returns the buffers and whether a GSO send failed (the window is then resent).
    async fn submit(&self, bufs: Vec<Vec<u8>>, groups: &[Range<usize>]) -> (Vec<Vec<u8>>, bool) {
        let bufs = Rc::new(bufs);
        let mut ops = Vec::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            let members = bufs.get(g.clone()).unwrap_or(&[]);
            let iov = members
                .iter()
                .map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
                .collect();
            let segment = (g.len() > 1).then(|| members.first().map_or(0, |b| b.len() as u16));
            let to = self.outs.get(g.start).map(|o| o.to);
            let Some(to) = to else { continue };
            let spec = SendSpec { to, from: None, segment, iov };
            let link = i + 1 < groups.len();
            // SAFETY: the iovecs point into the heap buffers of the Vecs inside `bufs`; the
            // op holds an Rc clone, and nothing mutates them until every op completed.
            ops.push((segment.is_some(), unsafe {
                udp_msg::send_msg(&self.sock, spec, Rc::clone(&bufs), link)
            }));
        }
        let mut gso_failed = false;
        for (gso, op) in ops {
            let (res, _) = op.await;
            match res {
                Err(e) if gso && e.raw_os_error() != Some(libc::ECANCELED) => {
                    debug!("GSO send failed: {e}");
                    gso_failed = true;
                }
                // A lost datagram is the protocol's business: the timer resends the window.
                Err(e) => debug!("send failed: {e}"),
                Ok(_) => {}
            }
        }
        // Every op completed and dropped its clone, so this is the only owner left.
        let bufs = Rc::try_unwrap(bufs).unwrap_or_else(|rc| rc.iter().map(|_| Vec::new()).collect());
        (bufs, gso_failed)
    }
}

/// Splits the window into sends: runs of DATA to one peer whose datagrams all have the
/// first one's size except maybe a shorter last (the GSO shape), else single datagrams.
fn plan_groups(bufs: &[Vec<u8>], outs: &[Out], gso: bool) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < bufs.len() {
        let mut j = i + 1;
        let first = outs.get(i).copied();
        let seg = bufs.get(i).map_or(0, Vec::len);
        if let (true, Some(first)) = (gso && seg > 0, first) {
            let max = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / seg);
            while j < bufs.len()
                && j - i < max
                && outs.get(j).is_some_and(|o| o.data && first.data && o.to == first.to)
                && bufs.get(j - 1).map_or(0, Vec::len) == seg
                && bufs.get(j).map_or(usize::MAX, Vec::len) <= seg
            {
                j += 1;
            }
        }
        groups.push(i..j);
        i = j;
    }
    groups
}

/// Reads each DATA item's payload behind its header: one preadv per run of blocks whose
/// file ranges follow each other, or a copy from memory for netascii.
async fn fill(
    source: &Source,
    bufs: &mut [Vec<u8>],
    items: &[Transmit],
    cap: usize,
) -> Result<(), ReadFailed> {
    let mut i = 0;
    while i < items.len() {
        let Some(&Transmit::Data { offset, .. }) = items.get(i) else {
            i += 1;
            continue;
        };
        // Extend the run while the next item is DATA starting where this one ends.
        let mut lens = Vec::new();
        let mut end = offset;
        let mut j = i;
        while let Some(&Transmit::Data { offset: o, len, .. }) = items.get(j) {
            if o != end || DATA_HEADER_LEN + len > cap {
                break;
            }
            lens.push(len);
            end = o + len as u64;
            j += 1;
        }
        if j == i {
            return Err(ReadFailed(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let run = bufs.get_mut(i..j).unwrap_or(&mut []);
        read_run(source, run, &lens, offset).await?;
        i = j;
    }
    Ok(())
}

async fn read_run(
    source: &Source,
    run: &mut [Vec<u8>],
    lens: &[usize],
    offset: u64,
) -> Result<(), ReadFailed> {
    let total: usize = lens.iter().sum();
    match source {
        Source::Memory(bytes) => {
            let mut at = usize::try_from(offset).unwrap_or(usize::MAX);
            for (buf, &len) in run.iter_mut().zip(lens) {
                let end = at.saturating_add(len);
                let src = bytes.get(at..end).ok_or(ReadFailed(io::Error::from_raw_os_error(libc::EINVAL)))?;
                buf.extend_from_slice(src);
                at = end;
            }
            Ok(())
        }
        Source::File(_) if total == 0 => Ok(()),
        Source::File(file) => {
            let owned: Vec<Vec<u8>> = run.iter_mut().map(std::mem::take).collect();
            let (res, owned) = ops::read_into_slots(file, owned, DATA_HEADER_LEN, lens, offset).await;
            for (slot, buf) in run.iter_mut().zip(owned) {
                *slot = buf;
            }
            match res {
                Ok(n) if n as usize == total => Ok(()),
                // The file shrank under us: the promised size can no longer be sent.
                Ok(_) => Err(ReadFailed(io::Error::from_raw_os_error(libc::EIO))),
                Err(e) => Err(ReadFailed(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(sizes: &[usize], data: bool) -> (Vec<Vec<u8>>, Vec<Out>) {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        (sizes.iter().map(|&n| vec![0; n]).collect(), sizes.iter().map(|_| Out { to, data }).collect())
    }

    #[test]
    fn full_blocks_and_a_short_last_form_one_gso_group() {
        let (b, o) = window(&[516, 516, 516, 100], true);
        assert_eq!(plan_groups(&b, &o, true), vec![0..4]);
        assert_eq!(plan_groups(&b, &o, false), vec![0..1, 1..2, 2..3, 3..4]);
    }

    #[test]
    fn groups_respect_segment_and_byte_caps() {
        let (b, o) = window(&[1472; 64], true);
        let g = plan_groups(&b, &o, true);
        assert_eq!(g, vec![0..44, 44..64], "44 x 1472 bytes fit under the GSO byte cap");
        let (b, o) = window(&[40_000, 40_000], true);
        assert_eq!(plan_groups(&b, &o, true), vec![0..1, 1..2]);
    }

    #[test]
    fn control_datagrams_are_sent_alone() {
        let (b, o) = window(&[20, 20], false);
        assert_eq!(plan_groups(&b, &o, true), vec![0..1, 1..2]);
    }
}
