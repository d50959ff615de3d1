//! The end of a certificate's validity (X.509 `notAfter`), read from its DER with a minimal
//! walk of the TBSCertificate, so start-up can warn about an expired certificate.

use crate::calendar::days_from_civil;

/// One DER element: its tag and contents; `rest` follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notAfter` of a DER certificate as unix seconds (RFC 5280 §4.1.2.5), or `None` when the
/// bytes are not shaped like a certificate.
pub fn not_after_unix(cert_der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = element(cert_der)? else { return None };
    let (SEQUENCE, mut tbs, _) = element(cert)? else { return None };
    // version [0] EXPLICIT is optional; then serial, signature algorithm, issuer, validity.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, validity, _) = element(tbs)? else { return None };
    let (_, _, after) = element(validity)?;
    let (tag, time, _) = element(after)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day, h, m, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, "20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x17, "7001010000Z"), None);
        assert_eq!(parse_time(0x18, "2038011903140Z"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(not_after_unix(b""), None);
        assert_eq!(not_after_unix(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after_unix(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
