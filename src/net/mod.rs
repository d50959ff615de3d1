//! Sockets before the protocols see them: one SO_REUSEPORT member per worker for every FTP
//! and TFTP listen address (bound before the privilege drop, with clear errors), and the
//! PROXY protocol header a load balancer puts in front of a connection; and kernel TLS on a
//! connected socket.

// setsockopt(TLS_TX/TLS_RX) takes C structures, and alerts travel in raw control messages.
#[allow(unsafe_code)]
pub mod ktls;
pub mod listen;
pub mod proxy_header;
