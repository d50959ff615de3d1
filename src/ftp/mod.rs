//! The FTP protocol core, without IO (RFC 959 and its extensions 2389, 2428, 2640, 3659, 7151).
//! [`Session`] is a state machine: control bytes, completions and time go in; replies and
//! [`Action`]s for the io layer come out. Parsing, paths and listings are pure helpers.
//!
//! Driving a session (the io layer's side of the contract):
//! 1. `Session::new(settings, peer, local, now)` per accepted control connection.
//! 2. After every `handle_input` / `handle_completion` / `handle_timeout`, drain
//!    `poll_output()` until `None`, acting on each [`Output`] in order, then re-arm the timer
//!    from `poll_timeout()`.
//! 3. Answer every `Output::Action(token, _)` with exactly one `handle_completion(token, _)`,
//!    except `Action::Transfer`, which gets `Started` then `Finished`/`Failed` (or `Failed`
//!    alone). `Output::Event`s need no answer. After `Output::Close`, flush and close.
//! 4. Keep reading the control socket during transfers: ABOR, STAT and QUIT act at once.

#![forbid(unsafe_code)]

pub mod account;
pub mod command;
pub mod glob;
pub mod line;
pub mod listing;
pub mod ops;
pub mod path;
pub mod reply;
pub mod session;
pub mod settings;

pub use account::{Account, Permissions};
pub use glob::NameFilter;
pub use listing::{FileKind, FileMeta, ListFormat};
pub use ops::{
    Action, DataEndpoint, Event, FsError, OpResult, OpToken, Output, PassiveRefusal, StoreMode,
    TransferError, TransferEvent, TransferKind,
};
pub use path::VirtualPath;
pub use reply::Reply;
pub use session::Session;
pub use settings::FtpSettings;
