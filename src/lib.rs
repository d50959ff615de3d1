//! Ferry: a zero-copy io_uring FTP + TFTP appliance server.
//! The library holds every module; `main.rs` only parses the command line and calls in.

pub mod config;
pub mod ftp;
