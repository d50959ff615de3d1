//! FTP replies and their wire encoding (RFC 959 §4.2): a three-digit code with one line,
//! or the multi-line form `123-first` ... `123 last`, every line CRLF-terminated.
//! Text is bytes because path names in replies need not be UTF-8 (RFC 2640 §2.2).

use crate::file_error::FileErrorKind;

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

    /// The answer to a failed file operation or transfer (RFC 959 §4.2.1): 550 file
    /// unavailable, 553 name not allowed, 452 insufficient storage space in system (a full
    /// disk: transient), 552 exceeded storage allocation (a quota or size limit), 451 local
    /// error; RFC 3659 §5: 554 for a REST offset past the end. RFC 959 §5.4 allows 452 only
    /// as a first reply to STOR/APPE/STOU; a disk that fills after the 150 is answered by
    /// the transfer's own completion (451).
    pub fn for_file(kind: FileErrorKind) -> Reply {
        use FileErrorKind::*;
        let (code, text) = match kind {
            NotFound => (550, "No such file or directory."),
            NotADirectory => (550, "Not a directory."),
            IsADirectory => (550, "Is a directory."),
            NotRegular => (550, "Not a regular file."),
            NotEmpty => (550, "Directory not empty."),
            Exists => (550, "File exists."),
            PermissionDenied => (550, "Permission denied."),
            NameTooLong | InvalidName => (553, "File name not allowed."),
            NoSpace => (452, "Insufficient storage space in system."),
            QuotaExceeded | TooLarge => (552, "Exceeded storage allocation."),
            OffsetBeyondEnd => (554, "Requested action not taken: invalid REST parameter."),
            Busy => (451, "Server busy; try again later."),
            Other => (451, "Local error in processing."),
        };
        Reply::new(code, text)
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
    fn every_file_error_kind_has_its_rfc_959_code() {
        // RFC 959 §4.2.1; 554 for REST from RFC 3659 §5.
        let table = [
            (FileErrorKind::NotFound, 550),
            (FileErrorKind::NotADirectory, 550),
            (FileErrorKind::IsADirectory, 550),
            (FileErrorKind::NotRegular, 550),
            (FileErrorKind::NotEmpty, 550),
            (FileErrorKind::Exists, 550),
            (FileErrorKind::NameTooLong, 553),
            (FileErrorKind::InvalidName, 553),
            (FileErrorKind::PermissionDenied, 550),
            (FileErrorKind::NoSpace, 452),
            (FileErrorKind::QuotaExceeded, 552),
            (FileErrorKind::TooLarge, 552),
            (FileErrorKind::OffsetBeyondEnd, 554),
            (FileErrorKind::Busy, 451),
            (FileErrorKind::Other, 451),
        ];
        assert_eq!(table.map(|(k, _)| k), FileErrorKind::ALL, "one row per kind, in order");
        for (kind, code) in table {
            assert_eq!(Reply::for_file(kind).code, code, "{kind:?}");
        }
    }

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
