//! The shared floor of the io layer: custom io_uring operations, UDP messages with packet
//! info and GSO, zero-copy file/socket movement, time-bounded socket operations, and the
//! per-worker buffer and pipe pools and server-wide memory budgets. Knows no protocol.

pub mod buf_pool;
pub mod memory_budget;
// io_uring SQEs point at fds and buffers the kernel uses until the completion.
#[allow(unsafe_code)]
pub mod ops;
pub mod sockets;
// recvmsg/sendmsg headers, cmsgs and socket addresses are raw C structures.
#[allow(unsafe_code)]
pub mod udp_msg;
pub mod zerocopy;
