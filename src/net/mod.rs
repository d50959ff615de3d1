//! Socket creation before the privilege drop: one SO_REUSEPORT member per worker for every
//! FTP and TFTP listen address, with clear errors for the common failures.

pub mod listen;
