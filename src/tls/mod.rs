//! Sans-IO TLS for FTPS (RFC 4217): rustls's buffer-level server API behind [`TlsConn`]
//! (ciphertext in; plaintext and ciphertext out), the server configuration built from PEM bytes
//! ([`TlsServer`]), the per-control-session resumption store that binds data connections, and
//! the traffic keys in kernel TLS's layout ([`kernel`]).
//!
//! A protocol core like `ftp/` and `tftp/`: no sockets, files or clocks (rustls reads the time
//! itself for certificate checks; nothing here does). The io layer moves the bytes; the
//! configuration layer reads the PEM files.

mod conn;
pub mod kernel;
mod setup;
mod store;
mod validity;

pub use conn::{TlsConn, TlsError};
pub use rustls::ExtractedSecrets;
pub use setup::{provider, SessionTls, SetupError, TlsServer};
pub use store::SessionStore;
pub use validity::not_after_unix;

#[cfg(test)]
mod tests;
