//! The RRQ sender: OACK or DATA 1 first, then RFC 7440 windows of DATA once the client's
//! first ACK proved its address. DATA goes out as [`Transmit::Data`] descriptors so the io
//! layer reads file bytes straight behind the header; the core never touches payload.

use super::{Core, Outcome, TransferSettings, Transmit};
use crate::tftp::options::Negotiation;
use crate::tftp::wire::{Datagram, ErrorCode, Repr};
use std::net::SocketAddr;
use std::time::Instant;

/// Where an RRQ transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// RFC 2347: OACK sent, waiting for ACK 0. The client is unproven: only the OACK goes
    /// out, at most `1 + unproven_retransmits` times (amplification guard).
    OackSent { retransmits: u32, pending: bool },
    /// RFC 1350 without options: DATA 1 sent, waiting for ACK 1; unproven as above.
    FirstBlock { retransmits: u32, pending: bool },
    /// RFC 7440 §4: windows of `windowsize` blocks, each ended by one ACK.
    Sending,
}

/// Server side of a read request (RRQ): sends the file as DATA blocks.
#[derive(Debug)]
pub struct ReadTransfer {
    core: Core,
    phase: Phase,
    oack: Option<Datagram>,
    blksize: u64,
    window: u64,
    file_len: u64,
    /// Absolute number of the final block: the first one shorter than blksize (maybe empty).
    last_block: u64,
    /// Highest absolute block the client acknowledged (0 before any DATA).
    acked: u64,
    /// Next absolute block `poll_transmit` hands out.
    next: u64,
    /// Last absolute block of the current window (inclusive).
    window_end: u64,
    /// Highest absolute block ever handed out.
    max_sent: u64,
    /// Timeouts in a row without any datagram from the client, once every block was sent.
    silent_rounds: u32,
}

impl ReadTransfer {
    /// Starts a transfer of `file_len` bytes to `peer`.
    ///
    /// `negotiation` comes from [`crate::tftp::options::negotiate`]; with an OACK the
    /// transfer sends it and waits for ACK 0, without one it sends DATA 1. For netascii,
    /// `file_len` is the converted length and DATA offsets index the converted bytes.
    pub fn new(
        peer: SocketAddr,
        negotiation: &Negotiation,
        file_len: u64,
        settings: &TransferSettings,
        now: Instant,
    ) -> ReadTransfer {
        let v = negotiation.values;
        let blksize = u64::from(v.blksize.max(1));
        let mut core = Core::new(peer, negotiation, settings, now);
        let phase = match negotiation.oack {
            Some(_) => Phase::OackSent { retransmits: 0, pending: true },
            None => Phase::FirstBlock { retransmits: 0, pending: true },
        };
        core.arm(now);
        tracing::debug!(%peer, ?phase, blksize, window = v.windowsize, file_len, "RRQ transfer started");
        ReadTransfer {
            core,
            phase,
            oack: negotiation.oack,
            blksize,
            window: u64::from(v.windowsize.max(1)),
            file_len,
            last_block: file_len / blksize + 1,
            acked: 0,
            next: 1,
            window_end: 0,
            max_sent: 0,
            silent_rounds: 0,
        }
    }

    /// The client's address and port (its TID).
    pub fn peer(&self) -> SocketAddr {
        self.core.peer
    }

    /// Feeds a datagram that arrived on the transfer's socket from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let Some(repr) = self.core.screen(from, bytes) else { return };
        let Repr::Ack { block } = repr else {
            // RFC 1350 §5: a reader's peer only sends ACK (or ERROR).
            self.core.fail_with(ErrorCode::IllegalOperation, "expected ACK");
            return;
        };
        self.silent_rounds = 0;
        let wrap = self.core.settings.block_wrap;
        match self.phase {
            // RFC 2347: the client accepts the OACK with ACK 0; only then does data flow.
            Phase::OackSent { .. } if block == 0 => self.start_windows(now),
            // RFC 1350: ACK 1 proves the client; continue with windows.
            Phase::FirstBlock { .. } if block == wrap.wire(1) => {
                self.acked = 1;
                self.max_sent = self.max_sent.max(1);
                if self.acked == self.last_block {
                    self.complete(true);
                } else {
                    self.start_windows(now);
                }
            }
            Phase::OackSent { .. } | Phase::FirstBlock { .. } => {
                tracing::debug!(peer = %self.core.peer, block, "ignoring ACK before the handshake ACK");
            }
            Phase::Sending => self.on_window_ack(block, now),
        }
    }

    fn start_windows(&mut self, now: Instant) {
        tracing::debug!(peer = %self.core.peer, acked = self.acked, "client proven; windows open (RFC 7440)");
        self.phase = Phase::Sending;
        self.core.progress(now);
        self.open_window(now);
    }

    /// RFC 7440 §4: the next window starts right after the acknowledged block.
    fn open_window(&mut self, now: Instant) {
        self.next = self.acked + 1;
        self.window_end = (self.acked + self.window).min(self.last_block);
        if self.window_end == self.last_block {
            self.core.arm_short(now);
        } else {
            self.core.arm(now);
        }
    }

    fn on_window_ack(&mut self, block: u16, now: Instant) {
        let wrap = self.core.settings.block_wrap;
        let ahead = wrap.distance(self.acked, block);
        if ahead == 0 {
            // Sorcerer's Apprentice (RFC 1123 §4.2.3.1): a duplicate ACK never triggers
            // a send; only the timer retransmits.
            tracing::debug!(peer = %self.core.peer, block, "duplicate ACK ignored");
            return;
        }
        if self.acked + ahead > self.max_sent {
            tracing::debug!(peer = %self.core.peer, block, "ACK for a block not sent; ignored");
            return;
        }
        // RFC 7440 §4: an ACK inside the window (not only at its end) slides the window there.
        self.acked += ahead;
        self.core.progress(now);
        tracing::debug!(peer = %self.core.peer, acked = self.acked, "window slides");
        if self.acked == self.last_block {
            self.complete(true);
        } else {
            self.open_window(now);
        }
    }

    fn complete(&mut self, confirmed: bool) {
        self.core.finish(Outcome::Complete { bytes: self.file_len, confirmed });
    }

    /// Lets timers run; call when `now` reaches [`ReadTransfer::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.core.expired(now) {
            return;
        }
        match &mut self.phase {
            Phase::OackSent { retransmits, pending } | Phase::FirstBlock { retransmits, pending } => {
                self.core.unproven_timeout(retransmits, pending, now);
            }
            Phase::Sending => {
                let rearmed = if self.max_sent == self.last_block {
                    // Final ACK may be lost (RFC 1350 §6): the client may be gone. Stop after
                    // a few silent rounds on the short clock, without backoff, so the hold
                    // is at most (1 + final_retransmits) x the server's timeout.
                    self.silent_rounds += 1;
                    if self.silent_rounds > self.core.settings.final_retransmits {
                        tracing::debug!(peer = %self.core.peer, "final ACK never came; ending");
                        self.complete(false);
                        return;
                    }
                    self.core.retry_short(now)
                } else {
                    self.core.backoff(now)
                };
                if rearmed {
                    tracing::debug!(peer = %self.core.peer, from = self.acked + 1, "timeout: resending window");
                    self.next = self.acked + 1;
                }
            }
        }
    }

    /// Next datagram to send, in window order; call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(next) = self.core.queued() {
            return next;
        }
        let peer = self.core.peer;
        match &mut self.phase {
            Phase::OackSent { pending, .. } if *pending => {
                *pending = false;
                self.oack.map(|packet| Transmit::Datagram { to: peer, packet })
            }
            Phase::FirstBlock { pending, .. } if *pending => {
                *pending = false;
                self.max_sent = self.max_sent.max(1);
                Some(self.data(1))
            }
            Phase::Sending if self.next <= self.window_end => {
                let n = self.next;
                self.next += 1;
                self.max_sent = self.max_sent.max(n);
                Some(self.data(n))
            }
            _ => None,
        }
    }

    fn data(&self, n: u64) -> Transmit {
        let offset = (n - 1).saturating_mul(self.blksize);
        let len = self.file_len.saturating_sub(offset).min(self.blksize);
        Transmit::Data {
            to: self.core.peer,
            block: self.core.settings.block_wrap.wire(n),
            offset,
            len: usize::try_from(len).unwrap_or(0),
        }
    }

    /// When to call [`ReadTransfer::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Payload bytes the client has acknowledged so far (what a failed transfer delivered).
    #[must_use]
    pub fn bytes_acknowledged(&self) -> u64 {
        (self.acked * self.blksize).min(self.file_len)
    }

    /// `Some` once the transfer ended: drain `poll_transmit`, then free it.
    #[must_use]
    pub fn outcome(&self) -> Option<super::Outcome> {
        self.core.outcome.clone()
    }

    /// Ends the transfer from the io side (file read failed, shutdown): ERROR to the peer.
    pub fn abort(&mut self, code: ErrorCode, message: &'static str) {
        self.core.abort(code, message);
    }
}
