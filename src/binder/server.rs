//! The binder process: drops to the service user keeping only CAP_NET_BIND_SERVICE, then
//! answers bind requests on its channels until every channel is closed. It never parses
//! client data; a malformed message ends that channel's conversation.

use super::policy::{self, Refusal};
use super::proto::{BindRequest, BindResponse, REQUEST_LEN};
use crate::privs::{self, ServiceUser, StartPrivilege};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, sendmsg, ControlMessage, MsgFlags};
use socket2::{Domain, Socket, Type};
use std::io::IoSlice;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use tracing::{error, info, warn};

/// First fd number of the channels handed to the binder at exec.
pub const FIRST_CHANNEL_FD: i32 = 3;

/// Arguments of the hidden `ferry binder` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct BinderArgs {
    /// The only port the binder will bind (the active-mode data port).
    #[arg(long)]
    pub port: u16,
    /// Service user to run as (when started as root).
    #[arg(long)]
    pub user: String,
    /// Number of channel sockets, at fds 3, 4, ...
    #[arg(long)]
    pub channels: usize,
    /// The server's `log.target`, so the binder's lines go where the server's go (named apart
    /// from the global `--log-*` flags, which clap would otherwise merge with these).
    #[arg(long, value_enum, default_value = "auto")]
    pub binder_log_target: crate::config::LogTarget,
    /// The server's `log.format`.
    #[arg(long, value_enum, default_value = "text")]
    pub binder_log_format: crate::config::LogFormat,
    /// The server's `log.level` (`RUST_LOG`, inherited, still wins).
    #[arg(long, default_value = "info")]
    pub binder_log_level: String,
}

impl BinderArgs {
    /// The `[log]` settings the server passed down.
    pub fn log_config(&self) -> crate::config::LogConfig {
        crate::config::LogConfig {
            target: self.binder_log_target,
            format: self.binder_log_format,
            level: self.binder_log_level.clone(),
        }
    }
}

/// Runs the binder until all channels close. Returns the process exit code.
pub fn run(args: &BinderArgs) -> i32 {
    // The spawner, which may itself be PID 1 (a container's entrypoint).
    let parent = nix::unistd::getppid();
    let start = StartPrivilege::detect();
    if !start.can_bind_low_ports() {
        error!("binder started without CAP_NET_BIND_SERVICE; nothing to hand out");
        return 1;
    }
    let user = match start {
        StartPrivilege::Root => ServiceUser::lookup(&args.user),
        _ => Ok(ServiceUser::current()),
    };
    if let Err(e) = user.and_then(|u| privs::drop_binder(start, &u)) {
        error!("binder cannot drop privileges: {e}");
        return 1;
    }
    // The parent-death signal is reset by credential changes, so set it after the drop and
    // re-check the parent in case it died in between (then this process was reparented).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    if nix::unistd::getppid() != parent {
        return 0;
    }
    // SAFETY: the spawner placed exactly `channels` open socket fds at 3.. before exec and
    // nothing else in this process owns them.
    let mut channels: Vec<OwnedFd> =
        (0..args.channels as i32).map(|i| unsafe { OwnedFd::from_raw_fd(FIRST_CHANNEL_FD + i) }).collect();
    // Tell every worker's channel we are dropped and serving; the spawner waits for this,
    // so nothing is served while a privileged binder might still be starting.
    let ready = BindResponse::Ready.encode();
    channels.retain(|c| nix::sys::socket::send(c.as_raw_fd(), &ready, MsgFlags::MSG_NOSIGNAL).is_ok());
    info!(port = args.port, channels = channels.len(), "binder ready");
    while !channels.is_empty() {
        let mut fds: Vec<PollFd> =
            channels.iter().map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)).collect();
        if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
            if e == nix::errno::Errno::EINTR {
                continue;
            }
            error!("binder poll failed: {e}");
            return 1;
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut index = 0;
        channels.retain(|channel| {
            let keep = !ready[index] || serve_one(channel, args.port);
            index += 1;
            keep
        });
    }
    0
}

/// Answers one message on `channel`. Returns false when the conversation is over.
fn serve_one(channel: &OwnedFd, port: u16) -> bool {
    let mut buf = [0u8; REQUEST_LEN + 1];
    let n = match recv(channel.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return true,
        Err(_) => return false,
    };
    let request = match BindRequest::decode(&buf[..n.min(buf.len())]) {
        Ok(r) => r,
        Err(e) => {
            warn!("binder: malformed request ({e}); closing the channel");
            return false;
        }
    };
    let (response, socket) = match policy::check(&request, port, &local_addresses()) {
        Err(refusal) => {
            log_refusal(&request, &refusal);
            (BindResponse::Refused, None)
        }
        Ok(()) => match bind_socket(&request) {
            Ok(s) => (BindResponse::Granted, Some(s)),
            Err(e) => (BindResponse::Failed(e.raw_os_error().unwrap_or(libc::EIO)), None),
        },
    };
    let encoded = response.encode();
    let iov = [IoSlice::new(&encoded)];
    let fds;
    let cmsgs: &[ControlMessage] = match &socket {
        Some(s) => {
            fds = [s.as_raw_fd()];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg::<()>(channel.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).is_ok()
}

fn log_refusal(request: &BindRequest, refusal: &Refusal) {
    warn!(requested = %request.addr, "binder refused a bind request: {refusal}");
}

/// A TCP socket bound to the requested address, ready to connect out.
fn bind_socket(request: &BindRequest) -> std::io::Result<Socket> {
    let addr = std::net::SocketAddr::new(request.addr.ip().to_canonical(), request.addr.port());
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Many active data connections share port 20 at once; they differ by peer.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// The host's interface addresses now (interfaces can come and go while we run).
fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|ifa| ifa.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}
