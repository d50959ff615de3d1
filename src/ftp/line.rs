//! Splits the control byte stream into command lines (RFC 959 §4.1: Telnet NVT, CRLF ends a
//! command). Telnet IAC sequences are removed (RFC 854), and a line longer than the limit is
//! discarded up to its LF without being buffered, so memory per session stays bounded.

/// One line taken from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete command line without its CR LF; embedded NULs read as LF (RFC 959 App. II).
    Command(Vec<u8>),
    /// A line that exceeded the limit; its bytes were dropped (answer 500).
    TooLong,
}

/// Telnet decoder state (RFC 854).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    /// After IAC.
    Iac,
    /// After IAC WILL/WONT/DO/DONT: the option byte follows and is dropped.
    Option,
    /// Inside IAC SB ... IAC SE.
    Sub,
    /// IAC seen inside a subnegotiation.
    SubIac,
}

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;

/// Incremental line splitter; feed it bytes as they arrive.
#[derive(Debug)]
pub struct LineReader {
    max: usize,
    buf: Vec<u8>,
    telnet: Telnet,
    overlong: bool,
}

impl LineReader {
    /// A reader accepting lines of at most `max` bytes including CR LF.
    pub fn new(max: usize) -> LineReader {
        LineReader { max: max.max(3), buf: Vec::new(), telnet: Telnet::Data, overlong: false }
    }

    /// Bytes of a partial line held now (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes `bytes`, calling `emit` for each completed line in order.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(Line)) {
        for &b in bytes {
            match self.telnet {
                Telnet::Data if b == IAC => self.telnet = Telnet::Iac,
                Telnet::Data => self.data(b, &mut emit),
                Telnet::Iac => {
                    self.telnet = Telnet::Data;
                    match b {
                        IAC => self.data(IAC, &mut emit),
                        251..=254 => self.telnet = Telnet::Option,
                        SB => self.telnet = Telnet::Sub,
                        // IP, DM, AO, AYT, NOP, ...: commands with no argument, dropped.
                        240..=249 => {}
                        // Not a Telnet command: a client whose urgent IAC was taken out of
                        // band leaves a lone IAC; keep the byte rather than eat a letter of ABOR.
                        _ => self.data(b, &mut emit),
                    }
                }
                Telnet::Option => self.telnet = Telnet::Data,
                Telnet::Sub => {
                    if b == IAC {
                        self.telnet = Telnet::SubIac;
                    }
                }
                Telnet::SubIac => self.telnet = if b == SE { Telnet::Data } else { Telnet::Sub },
            }
        }
    }

    fn data(&mut self, b: u8, emit: &mut impl FnMut(Line)) {
        if b == b'\n' {
            if std::mem::take(&mut self.overlong) {
                emit(Line::TooLong);
            } else {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                for c in &mut line {
                    if *c == 0 {
                        *c = b'\n';
                    }
                }
                emit(Line::Command(line));
            }
            self.buf.clear();
            return;
        }
        if self.overlong {
            return;
        }
        // Room for the LF still to come: the limit counts the whole line.
        if self.buf.len() + 2 > self.max {
            self.overlong = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        for c in chunks {
            r.push(c, |l| out.push(l));
        }
        out
    }

    fn cmd(s: &[u8]) -> Line {
        Line::Command(s.to_vec())
    }

    #[test]
    fn splits_crlf_and_bare_lf() {
        assert_eq!(
            lines(100, &[b"USER a\r\nPASS b\nNO", b"OP\r\n"]),
            [cmd(b"USER a"), cmd(b"PASS b"), cmd(b"NOOP")]
        );
    }

    #[test]
    fn strips_telnet_sequences_across_chunks() {
        // IAC IP IAC DM ABOR, the RFC 959 §4.1.3 abort sequence, split mid-sequence.
        assert_eq!(lines(100, &[b"\xff\xf4\xff", b"\xf2ABOR\r\n"]), [cmd(b"ABOR")]);
        // IAC IAC is a literal 255; WILL/DO + option dropped; SB ... SE dropped.
        assert_eq!(lines(100, &[b"NO\xff\xfb\x01OP\xff\xfa\x18xx\xff\xf0\r\n"]), [cmd(b"NOOP")]);
        assert_eq!(lines(100, &[b"RETR a\xff\xffb\r\n"]), [cmd(b"RETR a\xffb")]);
    }

    #[test]
    fn lone_iac_keeps_next_byte() {
        assert_eq!(lines(100, &[b"\xffABOR\r\n"]), [cmd(b"ABOR")]);
    }

    #[test]
    fn overlong_line_is_discarded_not_buffered() {
        let mut r = LineReader::new(16);
        let mut out = Vec::new();
        r.push(&[b'x'; 1000], |l| out.push(l));
        assert!(r.buffered() <= 16);
        r.push(b"yyy\r\nNOOP\r\n", |l| out.push(l));
        assert_eq!(out, [Line::TooLong, cmd(b"NOOP")]);
    }

    #[test]
    fn exact_limit_is_accepted() {
        // 14 bytes of text + CRLF = 16.
        assert_eq!(lines(16, &[b"RETR 123456789\r\n"]), [cmd(b"RETR 123456789")]);
        assert_eq!(lines(16, &[b"RETR 1234567890\r\n"]), [Line::TooLong]);
    }

    #[test]
    fn nul_reads_as_newline() {
        assert_eq!(lines(100, &[b"MKD a\0b\r\n"]), [cmd(b"MKD a\nb")]);
    }
}
