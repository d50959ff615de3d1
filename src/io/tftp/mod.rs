//! TFTP's io: the request sockets (admission, opening files), one task per transfer driving
//! the sans-IO transfer core, window sends, per-transfer sockets, limits and the shared TFTP
//! state. Imports `ring/` and `context`, never FTP.

pub mod busy_poll;
pub mod cache;
pub mod inbox;
pub mod inlet;
pub mod limits;
pub mod neighbours;
pub mod requests;
pub mod resolve;
// Calls udp_msg's sends, whose iovecs must point at buffers kept alive by the caller.
#[allow(unsafe_code)]
pub mod send;
pub mod socket;
pub mod state;
pub mod transfer;
