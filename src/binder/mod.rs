//! The binder: the only code that keeps a privilege after start-up. A separate process that
//! holds CAP_NET_BIND_SERVICE and hands out TCP sockets bound to one of our own addresses
//! on the active-mode data port (20), and nothing else.
//!
//! `proto` is the fixed wire format, `policy` the pure decision, `server` the process loop,
//! `client` what workers call, `spawn` starts the helper.

// Takes ownership of the socket fd that SCM_RIGHTS installed.
#[allow(unsafe_code)]
pub mod client;
pub mod policy;
pub mod proto;
// Takes ownership of the channel fds the spawner placed at 3.. before exec.
#[allow(unsafe_code)]
pub mod server;
// pre_exec moves the channel fds into place between fork and exec.
#[allow(unsafe_code)]
pub mod spawn;
