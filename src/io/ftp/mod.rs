//! FTP's io: control connections feeding the sans-IO session, data connections (passive
//! listeners, active connects through the binder), transfers, file-system actions, admission
//! limits, the per-worker and shared FTP state, and the password verifier. Imports `ring/` and
//! `context`, never TFTP.

pub mod actions;
pub mod control;
pub mod crlf;
pub mod data;
pub mod ktls;
pub mod limits;
pub mod msg;
pub mod proxy;
pub mod state;
pub mod tls;
pub mod transfer;
pub mod verifier;
