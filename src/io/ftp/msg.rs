//! The one channel into a session's driver: control input, end of input, and completions of
//! asynchronous actions (password checks, transfer progress) sent by the tasks it started.

use crate::ftp::{OpResult, OpToken};

/// What reaches a session driver.
#[derive(Debug)]
pub enum Msg {
    /// Bytes from the control connection.
    Input(Vec<u8>),
    /// The client closed the control connection (or it failed).
    Eof,
    /// An asynchronous action finished (password check, transfer progress).
    /// Boxed: results are rare and large, and every session's channel reserves a block of
    /// message slots up front, so a small `Msg` keeps idle sessions small.
    Completion(OpToken, Box<OpResult>),
}
