//! The binder: the only code that keeps a privilege after start-up. A separate process that
//! holds CAP_NET_BIND_SERVICE and hands out TCP sockets bound to one of our own addresses
//! on the active-mode data port (20), and nothing else.
//!
//! `proto` is the fixed wire format, `policy` the pure decision, `server` the process loop,
//! `client` what workers call, `spawn` starts the helper.

pub mod client;
pub mod policy;
pub mod proto;
pub mod server;
pub mod spawn;
