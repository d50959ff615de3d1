//! The per-transfer UDP socket (the server's TID, RFC 1350 §4): a fresh socket bound to the
//! local address the request arrived on, on an ephemeral port or one from `transfer_ports`.
//! Never SO_REUSEADDR/SO_REUSEPORT (two transfers could get the same ephemeral port) and
//! never connected, so DATA/ACK from a wrong port reaches the core and is answered ERROR 5.

use crate::config::PortRange;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// Binds a transfer socket at `local` (its port is ignored) using `ports` when given.
pub fn bind_transfer(local: SocketAddr, ports: Option<&PortRange>) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        // Bound to one concrete address, so dual-stack is irrelevant; say so explicitly.
        socket.set_only_v6(true)?;
    }
    match ports {
        None => socket.bind(&with_port(local, 0).into())?,
        Some(range) => bind_in_range(&socket, local, range)?,
    }
    Ok(socket.into())
}

/// Tries every port of `range` once, starting at a random one, so concurrent transfers
/// spread over the range instead of all probing from its first port.
fn bind_in_range(socket: &Socket, local: SocketAddr, range: &PortRange) -> io::Result<()> {
    let len = range.len();
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
    }
    let start = rand::random::<usize>() % len;
    for i in 0..len {
        let port = range.first as usize + (start + i) % len;
        let port = u16::try_from(port).unwrap_or(range.last);
        match socket.bind(&with_port(local, port).into()) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EADDRINUSE))
}

fn with_port(mut addr: SocketAddr, port: u16) -> SocketAddr {
    addr.set_port(port);
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn ephemeral_ports_are_distinct() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let socks: Vec<UdpSocket> = (0..200).map(|_| bind_transfer(local, None).unwrap().into()).collect();
        let mut ports: Vec<u16> = socks.iter().map(|s| s.local_addr().unwrap().port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 200, "no two transfers may share a port");
    }

    #[test]
    fn port_range_is_used_and_exhausts() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Find three consecutive free ports to make a range.
        let base = UdpSocket::bind(local).unwrap().local_addr().unwrap().port();
        let range = PortRange { first: base, last: base.saturating_add(2) };
        let mut held = Vec::new();
        while let Ok(fd) = bind_transfer(local, Some(&range)) {
            let s: UdpSocket = fd.into();
            let p = s.local_addr().unwrap().port();
            assert!((range.first..=range.last).contains(&p));
            held.push(s);
            assert!(held.len() <= 3);
        }
        assert!(!held.is_empty());
    }
}
