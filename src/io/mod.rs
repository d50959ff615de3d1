//! The io layer: the only code that touches io_uring. One worker thread per CPU, each with
//! its own tokio-uring runtime, listeners, sessions and pools; protocol logic lives in the
//! sans-IO cores and is driven from here.
//!
//! `ring/` is the floor both protocols stand on (custom ops, UDP messages, zero-copy, pools);
//! `ftp/` and `tftp/` drive their cores and never import each other; `context` is the leaf
//! every driver reads (with its `registry` of what runs, for the session view); `worker` is the one file that starts both protocols.

pub mod context;
pub mod ftp;
pub mod registry;
pub mod ring;
pub mod tftp;
pub mod worker;
