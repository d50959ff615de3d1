//! Ferry: a zero-copy io_uring FTP + TFTP appliance server.
//! The library holds every module; `main.rs` only parses the command line and calls in.

// `unsafe` only where a module talks to the kernel directly; each such module is let off
// at its `mod` line with the reason, and every block in it carries a `// SAFETY:` comment.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod binder;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod cpu_quota;
pub mod fd_limit;
pub mod file_error;
pub mod fs;
pub mod ftp;
pub mod io;
pub mod net;
pub mod observe;
pub mod privs;
pub mod reload;
pub mod server;
pub mod tftp;
pub mod tls;
