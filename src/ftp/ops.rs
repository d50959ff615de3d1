//! The vocabulary between the FTP session and the io layer: the [`Action`]s the session asks
//! for, the [`OpResult`]s the io layer answers with (each naming its [`OpToken`]), and the
//! [`Output`] stream (replies, actions, events, close) the io layer drains in order.

use super::account::Account;
use super::glob::NameFilter;
use super::listing::{FileMeta, ListFormat};
use super::path::VirtualPath;
use std::net::{IpAddr, SocketAddr};

/// Names one [`Action`]; the io layer passes it back with the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpToken(pub u64);

/// What the session asks of the outside, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes to write to the control connection (one encoded reply).
    Reply(Vec<u8>),
    /// Work for the io layer; answer with `handle_completion(token, ..)`.
    Action(OpToken, Action),
    /// A notice for the io layer that needs no answer.
    Event(Event),
    /// Flush the replies queued before this, then close the control connection.
    Close,
}

/// Notices that need no completion.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A user logged in: open this account's root for the following actions.
    LoggedIn(Account),
    /// REIN: the account is gone; the root may be closed.
    LoggedOut,
    /// ABOR: cancel the transfer with this token, then complete it with
    /// `TransferEvent::Failed(TransferError::Aborted)` (or `Finished` if it won the race).
    AbortTransfer(OpToken),
    /// Close the passive listener, if any (PORT after PASV, REIN).
    ClosePassive,
    /// A login attempt failed (unknown user, wrong password, anonymous refused): count it.
    LoginFailed,
    /// AUTH TLS was answered with 234 (queued before this): from now on the control
    /// connection's bytes in both directions go through a TLS server handshake.
    StartTls,
}

/// Where the data connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEndpoint {
    /// Accept on the listener opened by the last `OpenPassive`.
    Passive,
    /// Connect to the client (PORT/EPRT), from the control connection's local address.
    Active(SocketAddr),
}

/// How STOR/APPE/STOU open the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Create or replace; truncate unless `offset` > 0 (REST), then write from `offset`.
    Replace,
    /// Open for append (APPE), creating if missing.
    Append,
    /// Create only if absent (O_EXCL); used by STOU and users who may not overwrite.
    CreateNew,
}

/// The three kinds of data transfer.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferKind {
    /// Send a file from `offset` (REST); `ascii` asks for LF -> CRLF conversion.
    Retr {
        /// File to send.
        path: VirtualPath,
        /// Start offset from REST.
        offset: u64,
        /// TYPE A is in effect.
        ascii: bool,
    },
    /// Receive a file; `ascii` asks for CRLF -> LF conversion.
    Stor {
        /// File to write.
        path: VirtualPath,
        /// How to open it.
        mode: StoreMode,
        /// Start offset from REST (only with `Replace`).
        offset: u64,
        /// TYPE A is in effect.
        ascii: bool,
    },
    /// Send a directory listing rendered with `format.render` (a file path lists that file).
    List {
        /// Directory (or file) to list.
        path: VirtualPath,
        /// How to render entries.
        format: ListFormat,
        /// Include names starting with `.` (always for MLSD; `-a` for LIST/NLST).
        hidden: bool,
        /// LIST/NLST with a wildcard last component: `path` is its directory, and only the
        /// names this accepts are listed (never for MLSD, whose argument is a directory).
        glob: Option<NameFilter>,
    },
}

/// The io layer's work items. Paths are inside the account's root ([`VirtualPath::relative`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Verify `password` against the argon2 PHC string -> `OpResult::Password`, or
    /// `OpResult::VerifierBusy` when the check cannot be done now.
    VerifyPassword {
        /// PHC string from configuration.
        phc: String,
        /// Password as sent.
        password: Vec<u8>,
    },
    /// statx `path` following symlinks -> `OpResult::Stat`.
    Stat {
        /// Path to stat.
        path: VirtualPath,
    },
    /// Read a directory's entries (or the one entry of a file) -> `OpResult::Entries`.
    ReadDir {
        /// Directory to read.
        path: VirtualPath,
    },
    /// Open a passive listener in the configured port range on `bind`, replacing any
    /// previous one -> `OpResult::Passive`.
    OpenPassive {
        /// Local address to listen on (the control connection's, IPv4-mapped ones unmapped).
        bind: IpAddr,
        /// When set, accept data connections only from this address (canonical form).
        peer_only: Option<IpAddr>,
    },
    /// Run a transfer -> `OpResult::Transfer(Started)`, then `Finished` or `Failed`.
    /// Open the file first: a file error is reported before any data connection is used.
    Transfer {
        /// What to transfer.
        kind: TransferKind,
        /// Which data connection.
        data: DataEndpoint,
        /// PROT P: the data connection runs TLS (the server side, RFC 4217 §7), accepted
        /// after `Started`, since clients start the handshake once they read the 150.
        protect: bool,
    },
    /// mkdir -> `OpResult::Done`.
    MakeDir {
        /// Directory to create.
        path: VirtualPath,
    },
    /// rmdir -> `OpResult::Done`.
    RemoveDir {
        /// Directory to remove.
        path: VirtualPath,
    },
    /// unlink -> `OpResult::Done`.
    Delete {
        /// File to delete.
        path: VirtualPath,
    },
    /// rename -> `OpResult::Done`.
    Rename {
        /// Existing path.
        from: VirtualPath,
        /// New path.
        to: VirtualPath,
        /// May replace an existing `to` (the user holds `delete`); else it fails with `Exists`.
        replace: bool,
    },
    /// chmod -> `OpResult::Done`.
    Chmod {
        /// Target.
        path: VirtualPath,
        /// Permission bits (<= 0o7777).
        mode: u32,
    },
    /// Set the modification time (MFMT) -> `OpResult::Done`.
    SetMtime {
        /// Target.
        path: VirtualPath,
        /// Unix seconds.
        mtime: i64,
    },
}

/// File system failures the io layer reports: the protocol-neutral kind, which `fs::classify`
/// makes from errno and [`Reply::for_file`](super::Reply::for_file) answers.
pub type FsError = crate::file_error::FileErrorKind;

/// Why no passive listener was opened; the session answers 425 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PassiveRefusal {
    /// No port of the range could be bound (all taken, or a socket error).
    #[error("no passive port available")]
    NoPort,
    /// The client's address already holds its most passive listeners (`max_ports_per_ip`).
    #[error("too many passive listeners for this address")]
    PerAddress,
}

/// Why a transfer did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The data connection could not be opened or accepted: 425.
    #[error("cannot open data connection")]
    DataConnection,
    /// Cancelled (ABOR), the client closed the data connection, or it timed out: 426.
    #[error("transfer aborted")]
    Aborted,
    /// A local read/write error mid-transfer: 451.
    #[error("local error")]
    Local,
    /// Opening or writing the file failed.
    #[error("file system: {0}")]
    Fs(FsError),
    /// PROT P, and the data connection's TLS handshake failed: 425.
    #[error("TLS handshake on the data connection failed")]
    TlsHandshake,
    /// PROT P, and the data connection's TLS did not resume the control connection's
    /// session while `require_session_reuse` is on: 522.
    #[error("data connection TLS did not resume the control session")]
    TlsNotResumed,
}

/// Progress of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEvent {
    /// File open and data connection established: the session sends 150.
    Started,
    /// All bytes moved and the data connection closed: 226.
    Finished {
        /// Bytes transferred (for logs).
        bytes: u64,
    },
    /// Failed, before or after `Started`.
    Failed(TransferError),
}

/// The io layer's answer to an [`Action`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    /// Answer to `VerifyPassword`.
    Password {
        /// The password matched.
        valid: bool,
    },
    /// Answer to `VerifyPassword` when the verifier is saturated and refused or gave up on
    /// the check: the password was not judged, so this is not a failed login.
    VerifierBusy,
    /// Answer to `Stat`.
    Stat(Result<FileMeta, FsError>),
    /// Answer to `ReadDir`, with the wall clock (unix seconds) for LIST's time-or-year rule.
    Entries {
        /// Entries, or why they could not be read.
        entries: Result<Vec<FileMeta>, FsError>,
        /// Current time, unix seconds.
        now_unix: i64,
    },
    /// Answer to `OpenPassive`: the bound port.
    Passive(Result<u16, PassiveRefusal>),
    /// Answer to `Transfer`, twice: `Started` then `Finished`/`Failed` (or `Failed` alone).
    Transfer(TransferEvent),
    /// Answer to MakeDir, RemoveDir, Delete, Rename, Chmod, SetMtime.
    Done(Result<(), FsError>),
}
