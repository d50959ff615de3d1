//! The TFTP protocol core (RFC 1350 with options 2347, 2348, 2349 and windows 7440), sans IO:
//! datagrams and `now` go in, datagrams to send and file ranges to read or write come out.
//! The io layer owns sockets, files and clocks; see `transfer` for the driving contract.
#![forbid(unsafe_code)]

pub mod netascii;
pub mod options;
pub mod request;
pub mod transfer;
pub mod wire;

pub use options::{negotiate, Direction, Negotiated, Negotiation, RequestedOptions, ServerCaps};
pub use request::{plan, AccessPolicy, Mode, Request};
pub use transfer::{
    BlockWrap, FailReason, Outcome, ReadTransfer, TransferSettings, Transmit, WriteChunk, WriteTransfer,
};
pub use wire::{Datagram, ErrorCode};

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

    /// A bug of ours, reported without detail to the peer.
    pub(crate) const fn internal() -> Refusal {
        Refusal::new(ErrorCode::NotDefined, "internal error")
    }

    /// The ERROR datagram to send.
    pub fn datagram(&self) -> Datagram {
        Datagram::error(self.code, self.message)
    }
}
