//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer puts in
//! front of a TCP stream to say who the client really is. A pure parser over peeked bytes:
//! it says how many bytes the header takes, so the io layer consumes exactly those.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's fixed opening (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 line is at most 107 bytes, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
/// The longest version 2 header accepted: the addresses plus TLVs up to this total. Load
/// balancers send a few TLVs (AWS: a VPC endpoint id; HAProxy: ALPN, authority); a longer
/// header is refused rather than buffered.
pub const V2_MAX: usize = 512;
/// Bytes to peek so that any accepted header is seen whole.
pub const PEEK_LEN: usize = V2_MAX;

/// What the load balancer says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header takes at the start of the stream.
    pub len: usize,
    /// The client's address and port; `None` for a LOCAL (health check) or UNKNOWN
    /// connection, which is then served as the balancer's own.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when given.
    pub destination: Option<SocketAddr>,
}

/// Why bytes are not an acceptable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// More bytes are needed to decide (only ever while fewer than the maximum arrived).
    #[error("incomplete PROXY header")]
    Incomplete,
    /// The stream does not start with a PROXY header.
    #[error("no PROXY header")]
    Missing,
    /// It starts like one but breaks the spec.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Parses the header at the start of `bytes` (everything peeked so far).
pub fn parse(bytes: &[u8]) -> Result<Header, HeaderError> {
    if starts_with_prefix(bytes, &V2_SIGNATURE) {
        return if bytes.len() < V2_SIGNATURE.len() { Err(HeaderError::Incomplete) } else { parse_v2(bytes) };
    }
    if starts_with_prefix(bytes, b"PROXY ") {
        return if bytes.len() < 6 { Err(HeaderError::Incomplete) } else { parse_v1(bytes) };
    }
    Err(HeaderError::Missing)
}

/// True when `bytes` and `prefix` agree on their common length (an empty input agrees).
fn starts_with_prefix(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn parse_v1(bytes: &[u8]) -> Result<Header, HeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(HeaderError::Malformed("version 1 line longer than 107 bytes"))
        } else {
            Err(HeaderError::Incomplete)
        };
    };
    let len = end + 2;
    let line = std::str::from_utf8(&bytes[6..end]).map_err(|_| HeaderError::Malformed("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(Header { len, source: None, destination: None }),
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v6 = *proto == "TCP6";
            let ip = |s: &str| -> Result<IpAddr, HeaderError> {
                let ip: IpAddr = if v6 {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                } else {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                }
                .map_err(|_| HeaderError::Malformed("bad address"))?;
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, HeaderError> {
                // Decimal without sign or leading zeros (spec §2.1).
                if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
                    return Err(HeaderError::Malformed("bad port"));
                }
                s.parse().map_err(|_| HeaderError::Malformed("bad port"))
            };
            Ok(Header {
                len,
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
            })
        }
        _ => Err(HeaderError::Malformed("version 1 fields")),
    }
}

fn parse_v2(bytes: &[u8]) -> Result<Header, HeaderError> {
    const FIXED: usize = 16;
    if bytes.len() < FIXED {
        return Err(HeaderError::Incomplete);
    }
    let (ver_cmd, family) = (bytes[12], bytes[13]);
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::Malformed("version 2 signature with another version"));
    }
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = FIXED + body;
    if len > V2_MAX {
        return Err(HeaderError::Malformed("version 2 header too long"));
    }
    let Some(addrs) = bytes.get(FIXED..len) else { return Err(HeaderError::Incomplete) };
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection (health checks); addresses are ignored.
        0x0 => return Ok(Header { len, source: None, destination: None }),
        0x1 => {}
        _ => return Err(HeaderError::Malformed("unknown version 2 command")),
    }
    let v4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    // Family in the high nibble (1 = INET, 2 = INET6), transport in the low (1 = STREAM).
    match family {
        0x11 if addrs.len() >= 12 => Ok(Header {
            len,
            source: Some(SocketAddr::new(v4(&addrs[0..4]).into(), port(&addrs[8..10]))),
            destination: Some(SocketAddr::new(v4(&addrs[4..8]).into(), port(&addrs[10..12]))),
        }),
        0x21 if addrs.len() >= 36 => {
            let v6 = |b: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ipv6Addr::from(a)
            };
            Ok(Header {
                len,
                source: Some(SocketAddr::new(v6(&addrs[0..16]).into(), port(&addrs[32..34]))),
                destination: Some(SocketAddr::new(v6(&addrs[16..32]).into(), port(&addrs[34..36]))),
            })
        }
        0x11 | 0x21 => Err(HeaderError::Malformed("address block shorter than its family")),
        // UNSPEC, UDP or unix sockets: nothing we can use as a TCP client address.
        0x00 => Ok(Header { len, source: None, destination: None }),
        _ => Err(HeaderError::Malformed("unsupported version 2 family")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend([0x20 | cmd, family]);
        out.extend((addrs.len() as u16).to_be_bytes());
        out.extend(addrs);
        out
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn version_1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 21\r\nUSER x";
        let h = parse(line).unwrap();
        assert_eq!((h.len, h.source, h.destination), (44, sa("192.0.2.7:56324"), sa("198.51.100.1:21")));
        let h = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 21\r\n").unwrap();
        assert_eq!(h.source, sa("[2001:db8::7]:4000"));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().source, None);
        assert_eq!(parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap().source, None);
    }

    #[test]
    fn version_1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 056324 21\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 21\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 21\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
        ] {
            assert!(matches!(parse(bad), Err(HeaderError::Malformed(_))), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(&[b'P'; 200][..]), Err(HeaderError::Missing));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX + 10, b'1');
        assert!(matches!(parse(&long), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn version_2_inet_inet6_local_and_tlvs() {
        let mut addrs = vec![192, 0, 2, 7, 198, 51, 100, 1];
        addrs.extend(56324u16.to_be_bytes());
        addrs.extend(21u16.to_be_bytes());
        addrs.extend([0x04, 0x00, 0x02, b'h', b'i']); // a TLV, skipped
        let h = parse(&v2(1, 0x11, &addrs)).unwrap();
        assert_eq!((h.len, h.source, h.destination), (16 + 17, sa("192.0.2.7:56324"), sa("198.51.100.1:21")));
        let mut addrs = [0u8; 36];
        addrs[0..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        addrs[32..34].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(parse(&v2(1, 0x21, &addrs)).unwrap().source, sa("[2001:db8::7]:4000"));
        let local = parse(&v2(0, 0x00, &[])).unwrap();
        assert_eq!((local.len, local.source), (16, None));
    }

    #[test]
    fn version_2_refusals_and_bounds() {
        assert!(matches!(parse(&v2(1, 0x11, &[1, 2, 3])), Err(HeaderError::Malformed(_))));
        assert!(matches!(parse(&v2(2, 0x11, &[0; 12])), Err(HeaderError::Malformed(_))));
        assert!(matches!(parse(&v2(1, 0x31, &[0; 12])), Err(HeaderError::Malformed(_))));
        let mut other_version = v2(1, 0x11, &[0; 12]);
        other_version[12] = 0x11;
        assert!(matches!(parse(&other_version), Err(HeaderError::Malformed(_))));
        let mut huge = v2(1, 0x11, &[0; 12]);
        huge[14..16].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(parse(&huge), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete_never_an_error() {
        let mut addrs = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 21];
        addrs.extend([0x05, 0x00, 0x01, 0xff]);
        for whole in [v2(1, 0x11, &addrs), b"PROXY TCP4 10.0.0.1 10.0.0.2 80 21\r\n".to_vec()] {
            for n in 0..whole.len() {
                assert_eq!(parse(&whole[..n]), Err(HeaderError::Incomplete), "prefix of {n} bytes");
            }
            assert_eq!(parse(&whole).unwrap().len, whole.len());
        }
    }

    #[test]
    fn plain_ftp_and_tls_are_missing_not_malformed() {
        for start in [&b"USER anonymous\r\n"[..], b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.0\r\n"] {
            assert_eq!(parse(start), Err(HeaderError::Missing));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_lengths_fit(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(h) = parse(&bytes) {
                proptest::prop_assert!(h.len <= bytes.len() && h.len <= V2_MAX);
            }
        }
    }
}
