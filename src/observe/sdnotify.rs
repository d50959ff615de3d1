//! systemd readiness notification (`Type=notify`): a datagram to `$NOTIFY_SOCKET` saying
//! READY=1 once workers serve, STOPPING=1 when draining. A no-op outside systemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=value` pairs) to systemd; false when not
/// running under systemd or the send failed (never fatal).
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // A leading '@' names a socket in the abstract namespace.
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let Ok(addr) = addr else { return false };
    UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr)).is_ok()
}
