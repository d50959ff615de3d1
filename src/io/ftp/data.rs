//! FTP data connections: passive listeners in the configured port range (no SO_REUSEPORT, so
//! no two sessions share a port), accepting with the same-peer check, and active connections
//! from port 20 (via the binder) or an ephemeral port; each wait bounded (`ring::sockets`).

use super::limits::PassivePermit;
use super::proxy;
use crate::binder::client::BinderClient;
use crate::config::ftp::ProxyProtocolConfig;
use crate::config::PortRange;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::sockets::{bounded, endpoints, ready, timed_out, would_block, Cancel};
use crate::observe::metrics::HeldGauge;
use socket2::{Domain, SockRef, Socket, Type};

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// Pending connections a passive listener queues (one is expected).
const PASSIVE_BACKLOG: i32 = 4;

/// A session's passive listener and what it accepts; its place in the client address's
/// count of listeners is given back when it is dropped.
pub struct Passive {
    /// The listening socket.
    pub listener: SharedFd,
    /// Accept only this address, when set.
    pub peer_only: Option<IpAddr>,
    /// Held while the listener is open.
    pub permit: PassivePermit,
    /// Counts the port in `ferry_ftp_passive_ports_in_use` while the listener is open.
    pub in_use: HeldGauge,
}

/// Opens a listener on `bind` at a random port of `range`, then the next free ones.
pub fn open_passive(range: PortRange, bind: IpAddr) -> io::Result<(SharedFd, u16)> {
    let n = range.len();
    if n == 0 {
        return Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
    }
    let start = rand::random::<usize>() % n;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..n {
        let port = range.first + ((start + i) % n) as u16;
        let addr = SocketAddr::new(bind, port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
        if bind.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // The server closes download connections first, so their ports sit in TIME_WAIT for
        // a minute; SO_REUSEADDR lets a new listener take such a port. On Linux it never lets
        // two listeners share one (that would take SO_REUSEPORT, which we do not set).
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()).and_then(|()| socket.listen(PASSIVE_BACKLOG)) {
            Ok(()) => return Ok((Rc::new(OwnedFd::from(socket)), port)),
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Accepts the data connection on a passive listener within `timeout`, then closes the
/// listener (its port and its place in the address's count are free again while the
/// transfer runs). A connection from a trusted load balancer names its client in a PROXY
/// header, read first. With `peer_only`, connections from other clients (and ones whose
/// header fails) are closed and logged, and waiting goes on. Returns the connection and
/// its client.
pub async fn accept(
    passive: Passive,
    timeout: Duration,
    proxy: &ProxyProtocolConfig,
    cancel: &Cancel,
) -> io::Result<(SharedFd, SocketAddr)> {
    let Passive { listener, peer_only, permit: _permit, in_use: _in_use } = passive;
    let listener = &listener;
    cancel.watch(listener)?;
    let deadline = Instant::now() + timeout;
    loop {
        let (res, expired) = bounded(listener.as_raw_fd(), deadline, ops::accept(listener)).await;
        if expired {
            return Err(timed_out("passive accept"));
        }
        let (conn, from) = res?;
        let conn = Rc::new(conn);
        // An ABOR while the header is awaited wakes that wait, then the listener's again.
        cancel.watch(&conn)?;
        let header = proxy::client(&conn, from, proxy).await;
        cancel.watch(listener)?;
        let client = match header {
            Ok(client) => client,
            Err(why) => {
                info!(%from, reason = %why, "passive data connection closed: PROXY protocol");
                continue;
            }
        };
        match peer_only {
            Some(ip) if client.ip().to_canonical() != ip => {
                warn!(from = %client, expected = %ip, "passive data connection from a foreign address refused");
                drop(conn);
            }
            _ => return Ok((conn, client)),
        }
    }
}

/// Connects to the client for PORT/EPRT from `local_ip`: port 20 through the binder when
/// there is one, else an ephemeral port; within `timeout`.
pub async fn connect(
    binder: Option<&BinderClient>,
    source_port: u16,
    local_ip: IpAddr,
    target: SocketAddr,
    timeout: Duration,
    cancel: &Cancel,
) -> io::Result<SharedFd> {
    let local_ip = local_ip.to_canonical();
    let target = SocketAddr::new(target.ip().to_canonical(), target.port());
    let sock: OwnedFd = match binder {
        Some(b) => b
            .bind(SocketAddr::new(local_ip, source_port))
            .map_err(|e| io::Error::other(format!("binder: {e}")))?,
        None => {
            let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
            s.bind(&SocketAddr::new(local_ip, 0).into())?;
            s.into()
        }
    };
    SockRef::from(&sock).set_nonblocking(true)?;
    let sock = Rc::new(sock);
    cancel.watch(&sock)?;
    let deadline = Instant::now() + timeout;
    let (res, expired) = bounded(sock.as_raw_fd(), deadline, ops::connect(&sock, target)).await;
    if expired {
        return Err(timed_out("active connect"));
    }
    match res {
        Ok(()) => {}
        Err(e) if would_block(&e) => {
            ready(&sock, libc::POLLOUT, deadline).await?;
            if let Some(e) = SockRef::from(sock.as_ref()).take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    Ok(sock)
}

/// Logs an established data connection (admins and tests read the source port from it).
pub fn log_connection(mode: &str, sock: &SharedFd) {
    let (local, remote) = endpoints(sock);
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "?".to_string(), |a| a.to_string());
    info!(mode, local = %show(local), remote = %show(remote), "data connection established");
}
