//! TYPE A's line-ending conversion (RFC 959 §3.1.1.1), shared by the plain and the TLS
//! transfer paths: LF on disk, CRLF on the wire.

/// LF -> CRLF, leaving existing CRLF pairs alone; `prev_cr` carries across chunks.
pub fn to_crlf(input: &[u8], prev_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in input {
        if b == b'\n' && !*prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        *prev_cr = b == b'\r';
    }
}

/// CRLF -> LF; a CR ending a chunk is held in `held_cr` until the next byte is known.
pub fn from_crlf(input: &[u8], held_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in input {
        if std::mem::take(held_cr) && b != b'\n' {
            out.push(b'\r');
        }
        if b == b'\r' {
            *held_cr = true;
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(chunks: &[&[u8]]) -> Vec<u8> {
        let (mut prev_cr, mut out) = (false, Vec::new());
        chunks.iter().for_each(|c| to_crlf(c, &mut prev_cr, &mut out));
        out
    }

    fn up(chunks: &[&[u8]]) -> Vec<u8> {
        let (mut held, mut out) = (false, Vec::new());
        chunks.iter().for_each(|c| from_crlf(c, &mut held, &mut out));
        if held {
            out.push(b'\r'); // end of stream releases a held CR, as recv_ascii does
        }
        out
    }

    #[test]
    fn lf_to_crlf_across_chunks() {
        assert_eq!(down(&[b"a\nb\r", b"\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(down(&[b"\n\n"]), b"\r\n\r\n");
    }

    #[test]
    fn crlf_to_lf_across_chunks() {
        assert_eq!(up(&[b"a\r", b"\nb\r\n"]), b"a\nb\n");
        assert_eq!(up(&[b"a\rb\r"]), b"a\rb\r", "bare CRs are kept");
        assert_eq!(up(&[b"x\r", b"\r\n"]), b"x\r\n");
    }
}
