//! The FTP protocol core, without IO (RFC 959 and its extensions 2389, 2428, 2640, 3659, 7151).
//! [`Session`] is a state machine: control bytes, completions and time go in; replies and
//! [`Action`]s for the io layer come out. Parsing, paths and listings are pure helpers.

#![forbid(unsafe_code)]

pub mod account;
pub mod command;
pub mod line;
pub mod listing;
pub mod path;
pub mod reply;
pub mod session;
pub mod settings;

pub use account::{Account, Permissions};
pub use listing::{FileKind, FileMeta, ListFormat};
pub use path::VirtualPath;
pub use reply::Reply;
pub use session::{Action, DataEndpoint, FsError, OpResult, OpToken, Output, Session, TransferError};
pub use settings::FtpSettings;
