//! The TFTP protocol core (RFC 1350 with options 2347, 2348, 2349 and windows 7440), sans IO:
//! datagrams and `now` go in, datagrams to send and file ranges to read or write come out.
//! The io layer owns sockets, files and clocks; see `transfer` for the driving contract.
#![forbid(unsafe_code)]

pub mod netascii;
pub mod options;
pub mod remap;
pub mod request;
pub mod roots;
pub mod transfer;
pub mod wire;

pub use options::{negotiate, Direction, Negotiated, Negotiation, RequestedOptions, ServerCaps};
pub use request::{plan, AccessPolicy, Mode, Request};
pub use transfer::{
    BlockWrap, FailReason, Outcome, ReadTransfer, TransferSettings, Transmit, WriteChunk, WriteTransfer,
};
pub use wire::{Datagram, ErrorCode};

use crate::file_error::FileErrorKind;

/// A refusal to answer with one ERROR packet (RFC 1350 §7), then forget the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("TFTP ERROR {code:?}: {message}")]
pub struct Refusal {
    /// Error code to send.
    pub code: ErrorCode,
    /// Message to send.
    pub message: &'static str,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub const fn new(code: ErrorCode, message: &'static str) -> Refusal {
        Refusal { code, message }
    }

    /// ERROR 0 "server busy": answer to a request over `max_transfers` or the per-IP rate.
    pub const fn busy() -> Refusal {
        Refusal::new(ErrorCode::NotDefined, "server busy")
    }

    /// The ERROR for a file that could not be opened or written (RFC 1350 §5 codes); `other`
    /// is the ERROR 0 text for failures that have no code of their own (EIO, ...).
    pub const fn for_file(kind: FileErrorKind, other: &'static str) -> Refusal {
        use FileErrorKind::*;
        let (code, message) = match kind {
            NotFound | NotADirectory => (ErrorCode::FileNotFound, "file not found"),
            // Still ERROR 1 (there is no file to send), with a message that says why.
            IsADirectory => (ErrorCode::FileNotFound, "is a directory"),
            NotRegular => (ErrorCode::FileNotFound, "not a regular file"),
            // No name that long can exist; tftp-hpa answers ERROR 0 here, which says less.
            NameTooLong => (ErrorCode::FileNotFound, "file name too long"),
            InvalidName => (ErrorCode::FileNotFound, "invalid file name"),
            Exists => (ErrorCode::FileExists, "file already exists"),
            PermissionDenied => (ErrorCode::AccessViolation, "access violation"),
            NoSpace | QuotaExceeded | TooLarge => (ErrorCode::DiskFull, "disk full or allocation exceeded"),
            // The file may well be fine; the client should retry.
            Busy => return Refusal::busy(),
            NotEmpty | OffsetBeyondEnd | Other => (ErrorCode::NotDefined, other),
        };
        Refusal::new(code, message)
    }

    /// A bug of ours, reported without detail to the peer.
    pub(crate) const fn internal() -> Refusal {
        Refusal::new(ErrorCode::NotDefined, "internal error")
    }

    /// The ERROR datagram to send.
    pub fn datagram(&self) -> Datagram {
        Datagram::error(self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_error_kind_has_its_rfc_1350_code() {
        // RFC 1350 §5: 0 not defined, 1 file not found, 2 access violation, 3 disk full or
        // allocation exceeded, 6 file already exists.
        use ErrorCode::*;
        let table = [
            (FileErrorKind::NotFound, FileNotFound),
            (FileErrorKind::NotADirectory, FileNotFound),
            (FileErrorKind::IsADirectory, FileNotFound),
            (FileErrorKind::NotRegular, FileNotFound),
            (FileErrorKind::NotEmpty, NotDefined),
            (FileErrorKind::Exists, FileExists),
            (FileErrorKind::NameTooLong, FileNotFound),
            (FileErrorKind::InvalidName, FileNotFound),
            (FileErrorKind::PermissionDenied, AccessViolation),
            (FileErrorKind::NoSpace, DiskFull),
            (FileErrorKind::QuotaExceeded, DiskFull),
            (FileErrorKind::TooLarge, DiskFull),
            (FileErrorKind::OffsetBeyondEnd, NotDefined),
            (FileErrorKind::Busy, NotDefined),
            (FileErrorKind::Other, NotDefined),
        ];
        assert_eq!(table.map(|(k, _)| k), FileErrorKind::ALL, "one row per kind, in order");
        for (kind, code) in table {
            assert_eq!(Refusal::for_file(kind, "write error").code, code, "{kind:?}");
        }
        assert_eq!(Refusal::for_file(FileErrorKind::Busy, "x"), Refusal::busy());
        assert_eq!(Refusal::for_file(FileErrorKind::Other, "write error").message, "write error");
    }
}
