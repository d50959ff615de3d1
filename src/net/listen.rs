//! Binds every listening socket, one SO_REUSEPORT member per worker (the kernel spreads
//! connections and datagrams across members by hash). Runs before privileges are dropped.

use crate::config::Config;
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use tracing::warn;

/// Receive buffer of each TFTP request socket (room for thousands of queued requests).
const REQUEST_RCVBUF: usize = 8 << 20;

/// Listen backlog of each FTP member; the kernel caps it at net.core.somaxconn.
const TCP_BACKLOG: i32 = 4096;

/// Why a listening socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A port below 1024 without CAP_NET_BIND_SERVICE.
    #[error(
        "cannot bind {proto} {addr}: permission denied.\n\
         Ports below 1024 need CAP_NET_BIND_SERVICE. Either start Ferry as root (it drops to the \
         service user after binding), grant the capability (`setcap cap_net_bind_service=+ep \
         /path/to/ferry`, or AmbientCapabilities=CAP_NET_BIND_SERVICE in a systemd unit, or \
         `--cap-add NET_BIND_SERVICE` for a container), or pick unprivileged ports with \
         `--ftp-port 2121 --tftp-port 6969`."
    )]
    Privileged { proto: &'static str, addr: SocketAddr },
    /// Another process holds the address.
    #[error("cannot bind {proto} {addr}: address already in use (is another FTP/TFTP server running?)")]
    InUse { proto: &'static str, addr: SocketAddr },
    /// Anything else.
    #[error("cannot bind {proto} {addr}: {source}")]
    Other { proto: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Every bound socket, grouped by worker.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `ftp[w]` are worker `w`'s FTP control listeners (one per listen address).
    pub ftp: Vec<Vec<TcpListener>>,
    /// `ftps[w]` are worker `w`'s implicit-TLS FTP listeners (`ftp.tls.implicit_listen`).
    pub ftps: Vec<Vec<TcpListener>>,
    /// `tftp[w]` are worker `w`'s TFTP request sockets (one per listen address).
    pub tftp: Vec<Vec<UdpSocket>>,
}

impl Listeners {
    /// The addresses bound (worker 0's members; every worker has the same), FTP then TFTP.
    pub fn served(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        let ftp = self.ftp.first().into_iter().flatten().filter_map(|l| l.local_addr().ok()).collect();
        let tftp = self.tftp.first().into_iter().flatten().filter_map(|s| s.local_addr().ok()).collect();
        (ftp, tftp)
    }
}

/// Binds all configured addresses, `workers` members each. Refuses to start when another
/// process already serves one of them (see [`probe_unused`]).
pub fn bind_all(config: &Config, workers: usize) -> Result<Listeners, BindError> {
    let implicit: &[SocketAddr] = if config.ftp.enabled && config.ftp.tls.enabled && config.ftp.tls.implicit {
        &config.ftp.tls.implicit_listen
    } else {
        &[]
    };
    if config.ftp.enabled {
        for addr in config.ftp.listen.iter().chain(implicit) {
            with_v4_fallback(*addr, false, |a| probe_patiently(a, Type::STREAM, "TCP"))?;
        }
    }
    if config.tftp.enabled {
        for addr in &config.tftp.listen {
            with_v4_fallback(*addr, false, |a| probe_patiently(a, Type::DGRAM, "UDP"))?;
        }
    }
    let mut out = Listeners {
        ftp: (0..workers).map(|_| Vec::new()).collect(),
        ftps: (0..workers).map(|_| Vec::new()).collect(),
        tftp: (0..workers).map(|_| Vec::new()).collect(),
    };
    if config.ftp.enabled {
        for addr in &config.ftp.listen {
            for (w, slot) in out.ftp.iter_mut().enumerate() {
                slot.push(with_v4_fallback(*addr, w == 0, |a| bind_tcp(a).map(TcpListener::from))?);
            }
        }
    }
    for addr in implicit {
        for (w, slot) in out.ftps.iter_mut().enumerate() {
            slot.push(with_v4_fallback(*addr, w == 0, |a| bind_tcp(a).map(TcpListener::from))?);
        }
    }
    if config.tftp.enabled {
        for addr in &config.tftp.listen {
            for (w, slot) in out.tftp.iter_mut().enumerate() {
                slot.push(with_v4_fallback(*addr, w == 0, |a| bind_udp(a).map(UdpSocket::from))?);
            }
        }
    }
    Ok(out)
}

/// Binds `addr`; if it is the IPv6 wildcard and this host has no IPv6, binds 0.0.0.0.
fn with_v4_fallback<T>(
    addr: SocketAddr,
    warn_once: bool,
    bind: impl Fn(SocketAddr) -> Result<T, BindError>,
) -> Result<T, BindError> {
    match bind(addr) {
        Err(BindError::Other { source, .. })
            if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                && matches!(source.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)) =>
        {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
            if warn_once {
                warn!(%addr, fallback = %v4, "IPv6 is not available here ({source}); listening on IPv4 only");
            }
            bind(v4)
        }
        other => other,
    }
}

fn classify(proto: &'static str, addr: SocketAddr, source: std::io::Error) -> BindError {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) if addr.port() < 1024 => BindError::Privileged { proto, addr },
        Some(libc::EADDRINUSE) => BindError::InUse { proto, addr },
        _ => BindError::Other { proto, addr, source },
    }
}

/// Fails with [`BindError::InUse`] when another socket already holds `addr`. Our members set
/// SO_REUSEPORT, and a second server started by the same user would silently join the first
/// one's group and get half of its clients, served from its own root. A probe without
/// SO_REUSEPORT cannot share the port, so it sees the other server. (SO_REUSEADDR on the TCP
/// probe still lets a restart bind over the old server's TIME_WAIT connections.) It is
/// closed before the members bind: all probes run first, so our own members never meet them.
fn probe_unused(addr: SocketAddr, ty: Type, proto: &'static str) -> Result<(), BindError> {
    let err = |e| classify(proto, addr, e);
    let socket = Socket::new(Domain::for_address(addr), ty, None).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(err)?;
    }
    if ty == Type::STREAM {
        socket.set_reuse_address(true).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)
}

/// How long a start waits for an address a previous process still holds. A killed server's
/// io_uring is torn down by a kernel worker after the process is gone, and its in-flight
/// accepts keep the listening socket open meanwhile (milliseconds, longer on a loaded host),
/// so a restart must not take that for a second server.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`probe_unused`], retried while the address is in use, for up to [`RELEASE_WAIT`].
fn probe_patiently(addr: SocketAddr, ty: Type, proto: &'static str) -> Result<(), BindError> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        match probe_unused(addr, ty, proto) {
            Err(BindError::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn new_member(addr: SocketAddr, ty: Type, proto: Protocol, name: &'static str) -> Result<Socket, BindError> {
    let err = |e| classify(name, addr, e);
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto)).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too (v4-mapped); a specific v6 address is v6 only anyway.
        socket.set_only_v6(false).map_err(err)?;
    }
    Ok(socket)
}

/// One FTP control listener member.
pub fn bind_tcp(addr: SocketAddr) -> Result<Socket, BindError> {
    let err = |e| classify("TCP", addr, e);
    let socket = new_member(addr, Type::STREAM, Protocol::TCP, "TCP")?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(TCP_BACKLOG).map_err(err)?;
    Ok(socket)
}

/// One TFTP request socket member, reporting each datagram's destination address so
/// replies leave from the address the request arrived on (multi-homed hosts).
pub fn bind_udp(addr: SocketAddr) -> Result<Socket, BindError> {
    let err = |e| classify("UDP", addr, e);
    let socket = new_member(addr, Type::DGRAM, Protocol::UDP, "UDP")?;
    if addr.is_ipv6() {
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(|e| err(e.into()))?;
    }
    // On a dual-stack socket this covers the v4-mapped traffic; it may be refused on a
    // v6-only address, which then never sees IPv4 anyway.
    let v4 = setsockopt(&socket, sockopt::Ipv4PacketInfo, &true);
    if addr.is_ipv4() {
        v4.map_err(|e| err(e.into()))?;
    }
    // A boot storm sends thousands of requests at once; the default receive buffer (about
    // 200 KiB, a few hundred requests) would drop most of them. FORCE works while we are
    // still privileged (CAP_NET_ADMIN); otherwise the plain option, capped by rmem_max.
    if setsockopt(&socket, sockopt::RcvBufForce, &REQUEST_RCVBUF).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &REQUEST_RCVBUF);
    }
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket)
}
