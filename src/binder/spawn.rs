//! Starting the binder: one SOCK_SEQPACKET socketpair per worker, then fork + exec of our
//! own binary with the binder ends at fds 3.., so the helper starts from a clean image.

use super::client::BinderClient;
use super::server::FIRST_CHANNEL_FD;
use crate::config::LogConfig;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Upper bound on channels (one per worker); sized so `pre_exec` needs no allocation.
const MAX_CHANNELS: usize = 1024;

/// A running binder and one client channel per worker.
pub struct Binder {
    /// The helper process.
    pub child: Child,
    /// Client ends, one per worker, in worker order.
    pub clients: Vec<BinderClient>,
}

/// Starts `exe binder` serving `channels` channels for `port`, running as `user` and logging
/// as `log` says.
///
/// Call while single-threaded and still privileged.
pub fn spawn(exe: &Path, port: u16, user: &str, channels: usize, log: &LogConfig) -> std::io::Result<Binder> {
    if channels > MAX_CHANNELS {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "at most 1024 binder channels"));
    }
    let mut ours = Vec::with_capacity(channels);
    let mut theirs: Vec<OwnedFd> = Vec::with_capacity(channels);
    for _ in 0..channels {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        ours.push(a);
        theirs.push(b);
    }
    let raw: Vec<i32> = theirs.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut cmd = Command::new(exe);
    cmd.arg("binder")
        .arg("--port")
        .arg(port.to_string())
        .arg("--user")
        .arg(user)
        .arg("--channels")
        .arg(channels.to_string())
        .arg("--binder-log-target")
        .arg(value_name(log.target))
        .arg("--binder-log-format")
        .arg(value_name(log.format))
        .arg("--binder-log-level")
        .arg(&log.level)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let first_free = FIRST_CHANNEL_FD + channels as i32;
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2) run, on fds
    // this process owns; no allocation happens in the closure.
    unsafe {
        cmd.pre_exec(move || {
            // Two steps so a source fd can never be overwritten by an earlier target:
            // first move every source above the target range (close-on-exec copies), then
            // place each at its target (dup2 leaves the target inheritable).
            let mut moved = [0i32; MAX_CHANNELS];
            for (i, fd) in raw.iter().enumerate() {
                let m = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, first_free);
                if m < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = m;
            }
            for (i, m) in moved.iter().take(raw.len()).enumerate() {
                if libc::dup2(*m, FIRST_CHANNEL_FD + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(theirs);
    let clients: Vec<BinderClient> = ours.into_iter().map(BinderClient::new).collect();
    // Serve nothing until the binder has dropped to its one capability (or failed to).
    if let Some(e) = clients.iter().find_map(|c| c.wait_ready().err()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other(e.to_string()));
    }
    Ok(Binder { child, clients })
}

/// The command-line spelling of a `clap::ValueEnum` value.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}
