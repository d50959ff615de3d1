//! The io layer: the only code that touches io_uring. One worker thread per CPU, each with
//! its own tokio-uring runtime, listeners, sessions and pools; protocol logic lives in the
//! sans-IO cores and is driven from here.

pub mod buf_pool;
pub mod ftp_actions;
pub mod ftp_control;
pub mod ftp_data;
pub mod ftp_limits;
pub mod ftp_state;
pub mod ftp_transfer;
pub mod memory_budget;
pub mod ops;
pub mod tftp_limits;
pub mod tftp_send;
pub mod tftp_socket;
pub mod tftp_transfer;
pub mod tftp_udp;
pub mod udp_msg;
pub mod worker;
pub mod zerocopy;
