//! FTP replies and their wire encoding (RFC 959 §4.2): a three-digit code with one line,
//! or the multi-line form `123-first` ... `123 last`, every line CRLF-terminated.
//! Text is bytes because path names in replies need not be UTF-8 (RFC 2640 §2.2).

/// One reply to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code (RFC 959 §4.2.1).
    pub code: u16,
    /// Text lines; more than one makes a multi-line reply.
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<Vec<u8>>) -> Reply {
        Reply { code, lines: vec![text.into()] }
    }

    /// A multi-line reply from its lines (the first and last carry the code).
    pub fn multi(code: u16, lines: Vec<Vec<u8>>) -> Reply {
        Reply { code, lines }
    }

    /// 257 naming `path` quoted, with embedded quotes doubled (RFC 959 Appendix II).
    pub fn path_created(code: u16, path: &[u8], text: &str) -> Reply {
        let mut line = quote_path(path);
        line.push(b' ');
        line.extend_from_slice(text.as_bytes());
        Reply::new(code, line)
    }

    /// Appends the wire form to `out`.
    ///
    /// A middle line starting with a digit is indented by one space so that no client can
    /// mistake it for the last line (RFC 959 §4.2). CR and LF inside a line are escaped the
    /// way RFC 959 Appendix II asks for path names: LF as NUL, CR as CR NUL.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = format!("{:03}", self.code.min(999));
        let n = self.lines.len();
        if n <= 1 {
            out.extend_from_slice(code.as_bytes());
            out.push(b' ');
            push_text(out, self.lines.first().map(Vec::as_slice).unwrap_or(b""));
            out.extend_from_slice(b"\r\n");
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            if i == 0 || i == n - 1 {
                out.extend_from_slice(code.as_bytes());
                out.push(if i == 0 { b'-' } else { b' ' });
            } else if line.first().is_some_and(u8::is_ascii_digit) {
                out.push(b' ');
            }
            push_text(out, line);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'\n' => out.push(0),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
}

/// `path` in double quotes with each embedded `"` doubled (RFC 959 Appendix II, RFC 2640 §3.3).
pub fn quote_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 2);
    out.push(b'"');
    for &b in path {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::new(200, "OK").to_bytes(), b"200 OK\r\n");
    }

    #[test]
    fn multi_line_indents_digit_lines() {
        // RFC 959 §4.2: a middle line beginning with digits must not look like the end.
        let r = Reply::multi(211, vec![b"Status".to_vec(), b"211 fake end".to_vec(), b"End".to_vec()]);
        assert_eq!(r.to_bytes(), b"211-Status\r\n 211 fake end\r\n211 End\r\n");
    }

    #[test]
    fn two_line_reply() {
        let r = Reply::multi(230, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.to_bytes(), b"230-a\r\n230 b\r\n");
    }

    #[test]
    fn empty_reply_still_terminated() {
        assert_eq!(Reply::multi(200, vec![]).to_bytes(), b"200 \r\n");
    }

    #[test]
    fn quote_doubling_257() {
        // RFC 959 Appendix II: MKD foo"bar -> 257 "/foo""bar" created.
        let r = Reply::path_created(257, b"/foo\"bar", "created");
        assert_eq!(r.to_bytes(), b"257 \"/foo\"\"bar\" created\r\n");
    }

    #[test]
    fn newline_in_path_is_nul_escaped() {
        let r = Reply::path_created(257, b"/a\nb\rc", "x");
        assert_eq!(r.to_bytes(), b"257 \"/a\0b\r\0c\" x\r\n");
    }

    #[test]
    fn utf8_path_passes_through() {
        let r = Reply::path_created(257, "/Grüße".as_bytes(), "is the current directory");
        assert_eq!(r.to_bytes(), "257 \"/Grüße\" is the current directory\r\n".as_bytes());
    }
}
