//! Sockets before the protocols see them: one SO_REUSEPORT member per worker for every FTP
//! and TFTP listen address (bound before the privilege drop, with clear errors), and the
//! PROXY protocol header a load balancer puts in front of a connection.

pub mod listen;
pub mod proxy_header;
