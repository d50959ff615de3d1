//! The binder's wire format over a SOCK_SEQPACKET socketpair: one fixed-size request, one
//! fixed-size response (plus the fd as SCM_RIGHTS on success). Anything else is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Protocol version byte; a mismatch ends the conversation.
pub const VERSION: u8 = 1;
/// Size of an encoded request.
pub const REQUEST_LEN: usize = 20;
/// Size of an encoded response.
pub const RESPONSE_LEN: usize = 8;

mod field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const FAMILY: usize = 1;
    pub const PORT: Range<usize> = 2..4;
    pub const ADDR: Range<usize> = 4..20;
    pub const STATUS: usize = 0;
    pub const ERRNO: Range<usize> = 4..8;
}

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// The one request: "a TCP socket bound to `addr`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    /// Local address and port to bind.
    pub addr: SocketAddr,
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Wrong size.
    #[error("request is {0} bytes, expected {REQUEST_LEN}")]
    Length(usize),
    /// Unknown protocol version.
    #[error("unknown protocol version {0}")]
    Version(u8),
    /// Unknown address family.
    #[error("unknown address family {0}")]
    Family(u8),
}

impl BindRequest {
    /// Encodes the request.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut buf = [0u8; REQUEST_LEN];
        buf[field::VERSION] = VERSION;
        buf[field::PORT].copy_from_slice(&self.addr.port().to_be_bytes());
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                buf[field::FAMILY] = FAMILY_V4;
                buf[field::ADDR][..4].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                buf[field::FAMILY] = FAMILY_V6;
                buf[field::ADDR].copy_from_slice(&ip.octets());
            }
        }
        buf
    }

    /// Decodes a request, rejecting anything that is not exactly one well-formed message.
    pub fn decode(buf: &[u8]) -> Result<BindRequest, DecodeError> {
        if buf.len() != REQUEST_LEN {
            return Err(DecodeError::Length(buf.len()));
        }
        if buf[field::VERSION] != VERSION {
            return Err(DecodeError::Version(buf[field::VERSION]));
        }
        let port = u16::from_be_bytes([buf[field::PORT.start], buf[field::PORT.start + 1]]);
        let addr = &buf[field::ADDR];
        let ip = match buf[field::FAMILY] {
            FAMILY_V4 => {
                if addr[4..].iter().any(|b| *b != 0) {
                    return Err(DecodeError::Family(FAMILY_V4));
                }
                IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
            }
            FAMILY_V6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(addr);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            other => return Err(DecodeError::Family(other)),
        };
        Ok(BindRequest { addr: SocketAddr::new(ip, port) })
    }
}

/// The binder's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindResponse {
    /// Bound; the socket travels as SCM_RIGHTS with this message.
    Granted,
    /// The policy said no (wrong port or not one of our addresses).
    Refused,
    /// Allowed, but the kernel failed with this errno.
    Failed(i32),
    /// Sent once per channel when the binder has dropped its privileges and serves.
    Ready,
}

impl BindResponse {
    /// Encodes the response.
    pub fn encode(&self) -> [u8; RESPONSE_LEN] {
        let mut buf = [0u8; RESPONSE_LEN];
        let (status, errno) = match self {
            BindResponse::Granted => (0u8, 0i32),
            BindResponse::Refused => (1, 0),
            BindResponse::Failed(e) => (2, *e),
            BindResponse::Ready => (3, 0),
        };
        buf[field::STATUS] = status;
        buf[field::ERRNO].copy_from_slice(&errno.to_be_bytes());
        buf
    }

    /// Decodes a response; `None` when malformed.
    pub fn decode(buf: &[u8]) -> Option<BindResponse> {
        if buf.len() != RESPONSE_LEN {
            return None;
        }
        let errno = i32::from_be_bytes(buf[field::ERRNO].try_into().ok()?);
        match buf[field::STATUS] {
            0 => Some(BindResponse::Granted),
            1 => Some(BindResponse::Refused),
            2 => Some(BindResponse::Failed(errno)),
            3 => Some(BindResponse::Ready),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_for_both_families() {
        for addr in ["127.0.0.1:20", "[::1]:20", "[fe80::1]:65535"] {
            let req = BindRequest { addr: addr.parse().unwrap() };
            assert_eq!(BindRequest::decode(&req.encode()), Ok(req));
        }
    }

    #[test]
    fn malformed_requests_are_rejected() {
        let good = BindRequest { addr: "127.0.0.1:20".parse().unwrap() }.encode();
        assert_eq!(BindRequest::decode(&good[..19]), Err(DecodeError::Length(19)));
        let mut bad = good;
        bad[0] = 9;
        assert_eq!(BindRequest::decode(&bad), Err(DecodeError::Version(9)));
        let mut bad = good;
        bad[1] = 5;
        assert_eq!(BindRequest::decode(&bad), Err(DecodeError::Family(5)));
        let mut bad = good;
        bad[10] = 1; // trailing garbage after a v4 address
        assert!(BindRequest::decode(&bad).is_err());
    }

    #[test]
    fn responses_round_trip() {
        for r in [BindResponse::Granted, BindResponse::Refused, BindResponse::Failed(98), BindResponse::Ready]
        {
            assert_eq!(BindResponse::decode(&r.encode()), Some(r));
        }
        assert_eq!(BindResponse::decode(&[7; RESPONSE_LEN]), None);
    }
}
