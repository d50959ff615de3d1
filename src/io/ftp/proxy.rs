//! The PROXY protocol on accepted FTP connections: from a trusted load balancer the header
//! is peeked until whole, then exactly its bytes are read off, so whatever follows (a
//! command, an upload's first bytes) stays queued for the usual readers and the splice path.

use crate::config::ftp::ProxyProtocolConfig;
use crate::io::ring::ops;
use crate::io::ring::sockets::bounded;
use crate::net::proxy_header::{self, HeaderError, PEEK_LEN};
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a trusted balancer has to send the whole header: it sends it at once, so this
/// only bounds a connection that stalls before it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection is closed instead of served.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("no PROXY header from a trusted balancer")]
    Missing,
    #[error("{0}")]
    Malformed(HeaderError),
    #[error("no whole PROXY header within {}s", HEADER_TIMEOUT.as_secs())]
    TimedOut,
    #[error("closed before a whole PROXY header")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(std::io::Error),
}

/// The client a connection from `peer` serves: the header's source when `peer` is a trusted
/// balancer (its own address for a LOCAL or UNKNOWN header), else `peer` itself.
/// `sock` is shared so that a readiness poll in flight keeps its fd open.
pub async fn client<T: AsRawFd + 'static>(
    sock: &Rc<T>,
    peer: SocketAddr,
    cfg: &ProxyProtocolConfig,
) -> Result<SocketAddr, Rejected> {
    if !cfg.trusts(peer.ip()) {
        return Ok(peer);
    }
    let fd = sock.as_raw_fd();
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut buf = [0u8; PEEK_LEN];
    let header = loop {
        let n = match recv(fd, &mut buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Err(Rejected::Closed),
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => 0,
            Err(e) => return Err(Rejected::Io(e.into())),
        };
        match proxy_header::parse(&buf[..n]) {
            Ok(header) => break header,
            Err(HeaderError::Missing) => return Err(Rejected::Missing),
            Err(e @ HeaderError::Malformed(_)) => return Err(Rejected::Malformed(e)),
            // Nothing yet, or part of it: wait for more (a poll says readable while the
            // same bytes sit queued, so back off a little rather than spin on them).
            Err(HeaderError::Incomplete) => {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let wait = ops::poll_owned(Rc::clone(sock), fd, libc::POLLIN);
                if let (_, true) = bounded(fd, deadline, wait).await {
                    return Err(Rejected::TimedOut);
                }
                if Instant::now() >= deadline {
                    return Err(Rejected::TimedOut);
                }
            }
        }
    };
    // The header is queued whole (it was peeked), so this plain read takes exactly it.
    let mut taken = vec![0u8; header.len];
    match recv(fd, &mut taken, MsgFlags::MSG_DONTWAIT) {
        Ok(n) if n == header.len => Ok(header.source.unwrap_or(peer)),
        Ok(_) => Err(Rejected::Closed),
        Err(e) => Err(Rejected::Io(e.into())),
    }
}

/// True when the first bytes a client sent start a PROXY header: from an untrusted address
/// that is a misconfigured or spoofing balancer, and the connection is closed.
pub fn looks_like_header(first: &[u8]) -> bool {
    !matches!(proxy_header::parse(first), Err(HeaderError::Missing))
}
