//! Ferry: a zero-copy io_uring FTP + TFTP appliance server.
//! The library holds every module; `main.rs` only parses the command line and calls in.

pub mod auth;
pub mod binder;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod fs;
pub mod ftp;
pub mod io;
pub mod net;
pub mod observe;
pub mod privs;
pub mod reload;
pub mod server;
pub mod tftp;
