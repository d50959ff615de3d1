//! Netascii conversion (RFC 1350 §1 and RFC 764): LF <-> CR LF and bare CR <-> CR NUL.
//! Both directions stream over chunks of any size; the decoder keeps a CR that ends one
//! chunk (or DATA block) until it sees the byte that follows it in the next.

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const NUL: u8 = 0;

/// Converts local bytes to netascii; stateless because each input byte maps on its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct Encoder;

impl Encoder {
    /// Appends the netascii form of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 8);
        for &b in input {
            match b {
                LF => out.extend_from_slice(&[CR, LF]),
                CR => out.extend_from_slice(&[CR, NUL]),
                _ => out.push(b),
            }
        }
    }

    /// Length of the netascii form of `input` (what RRQ `tsize` must report).
    pub fn encoded_len(input: &[u8]) -> u64 {
        input.iter().map(|&b| if b == LF || b == CR { 2u64 } else { 1 }).sum()
    }
}

/// Converts netascii back to local bytes across chunk boundaries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Decoder {
    /// A CR ended the previous chunk; its meaning depends on the next byte.
    pending_cr: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Appends the local form of `input` to `out`.
    ///
    /// CR LF becomes LF and CR NUL becomes CR; a CR followed by anything else is kept as
    /// a bare CR with that byte (lenient: such input is not valid netascii).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                match b {
                    LF => out.push(LF),
                    NUL => out.push(CR),
                    CR => {
                        out.push(CR);
                        self.pending_cr = true;
                    }
                    _ => out.extend_from_slice(&[CR, b]),
                }
            } else if b == CR {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Ends the stream: a CR left dangling at the very end is written as a bare CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(CR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_line_ends_and_bare_cr() {
        let mut out = Vec::new();
        Encoder.encode(b"a\nb\rc", &mut out);
        assert_eq!(out, b"a\r\nb\r\0c");
        assert_eq!(Encoder::encoded_len(b"a\nb\rc"), out.len() as u64);
    }

    #[test]
    fn decodes_cr_split_across_blocks() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.decode(b"line\r", &mut out);
        assert_eq!(out, b"line");
        d.decode(b"\nnext\r", &mut out);
        d.decode(b"\0", &mut out);
        d.finish(&mut out);
        assert_eq!(out, b"line\nnext\r");
    }

    proptest! {
        #[test]
        fn decode_encode_round_trips(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                     cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let mut encoded = Vec::new();
            Encoder.encode(&data, &mut encoded);
            prop_assert_eq!(encoded.len() as u64, Encoder::encoded_len(&data));
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(encoded.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new();
            let mut out = Vec::new();
            let mut at = 0;
            for p in points.into_iter().chain([encoded.len()]) {
                d.decode(&encoded[at..p], &mut out);
                at = p;
            }
            d.finish(&mut out);
            prop_assert_eq!(out, data);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let mut out = Vec::new();
            let mut d = Decoder::new();
            d.decode(&data, &mut out);
            d.finish(&mut out);
            prop_assert!(out.len() <= data.len());
        }
    }
}
