//! The WRQ receiver: OACK or ACK 0 first, then in-order DATA acknowledged once per window
//! (RFC 7440 §4). Accepted payload is handed back as a [`WriteChunk`] naming a range of
//! the caller's own datagram buffer, so nothing is copied in the core.

use super::{Core, Outcome, TransferSettings, Transmit};
use crate::tftp::options::Negotiation;
use crate::tftp::wire::{Datagram, ErrorCode, Repr, DATA_HEADER_LEN};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

/// Bytes of a received DATA to store; carry it out before sending what `poll_transmit` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteChunk {
    /// Offset in the uploaded (wire) stream; for netascii decode and append instead.
    pub offset: u64,
    /// The payload's range inside the datagram passed to `handle_datagram`.
    pub data: Range<usize>,
    /// Final block: after writing it, commit (fsync and rename the temporary file) before
    /// sending the final ACK; on failure call `abort` so the client hears ERROR, not ACK.
    pub last: bool,
}

/// Where a WRQ transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// RFC 2347 OACK, or RFC 1350 ACK 0, sent; waiting for DATA 1. Unproven: only this
    /// one packet goes out, at most `1 + unproven_retransmits` times.
    Greeting { retransmits: u32, pending: bool },
    /// RFC 7440 §4: receiving blocks in order, ACK after each full window.
    Receiving,
    /// RFC 1350 §6: final block accepted; dallying to re-ACK a repeated final DATA.
    /// `acked` once the final ACK went out: from then on the outcome is settled.
    Dallying { acked: bool },
}

/// Server side of a write request (WRQ): receives DATA blocks and acknowledges them.
#[derive(Debug)]
pub struct WriteTransfer {
    core: Core,
    phase: Phase,
    greeting: Datagram,
    blksize: u64,
    window: u64,
    quota: u64,
    /// Absolute blocks accepted in order.
    received: u64,
    /// Payload bytes accepted.
    bytes: u64,
    /// Blocks accepted since the last ACK (RFC 7440 ACK cadence).
    since_ack: u64,
    /// An ACK for `received` is waiting in `poll_transmit`.
    ack_pending: bool,
    /// Already answered a gap or duplicate at this `received`; answer once, then rely on the timer.
    gap_answered: bool,
}

impl WriteTransfer {
    /// Starts receiving from `peer`: sends the OACK if options were accepted, else ACK 0.
    pub fn new(
        peer: SocketAddr,
        negotiation: &Negotiation,
        settings: &TransferSettings,
        now: Instant,
    ) -> WriteTransfer {
        let v = negotiation.values;
        let mut core = Core::new(peer, negotiation, settings, now);
        core.arm(now);
        tracing::debug!(%peer, blksize = v.blksize, window = v.windowsize, "WRQ transfer started");
        WriteTransfer {
            core,
            phase: Phase::Greeting { retransmits: 0, pending: true },
            greeting: negotiation.oack.unwrap_or_else(|| Datagram::ack(0)),
            blksize: u64::from(v.blksize.max(1)),
            window: u64::from(v.windowsize.max(1)),
            quota: settings.upload_quota,
            received: 0,
            bytes: 0,
            since_ack: 0,
            ack_pending: false,
            gap_answered: false,
        }
    }

    /// The client's address and port (its TID).
    pub fn peer(&self) -> SocketAddr {
        self.core.peer
    }

    /// Feeds a datagram from `from`; returns the payload to store, if it was the next block.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Option<WriteChunk> {
        let repr = self.core.screen(from, bytes)?;
        let Repr::Data { block, data } = repr else {
            // RFC 1350 §5: a writer's peer only sends DATA (or ERROR).
            self.core.fail_with(ErrorCode::IllegalOperation, "expected DATA");
            return None;
        };
        let len = data.len() as u64;
        if len > self.blksize {
            self.core.fail_with(ErrorCode::IllegalOperation, "DATA larger than the block size");
            return None;
        }
        let wrap = self.core.settings.block_wrap;
        let expected = self.received + 1;
        match self.phase {
            Phase::Greeting { .. } if block == wrap.wire(1) => {
                // RFC 2347: DATA 1 answers the OACK (or ACK 0) and proves the client.
                tracing::debug!(peer = %self.core.peer, "client proven; receiving (RFC 7440)");
                self.phase = Phase::Receiving;
            }
            Phase::Greeting { .. } => return None,
            Phase::Dallying { .. } => {
                // The client missed our final ACK and repeats the last DATA: ACK it again.
                // Each repeat restarts the dally: the client is alive and still waiting.
                if block == wrap.wire(self.received) {
                    self.ack_pending = true;
                    self.core.deadline = Some(now.checked_add(self.core.settings.dally).unwrap_or(now));
                }
                return None;
            }
            Phase::Receiving => {}
        }
        if block != wrap.wire(expected) {
            // RFC 7440 §4: on a gap or a repeat, ACK the last in-order block so the sender
            // restarts there; once per position, or a lost block in a window of 64 would
            // draw 63 ACKs.
            if !self.gap_answered {
                tracing::debug!(peer = %self.core.peer, block, expected, "out of order; ACK last in-order block");
                self.gap_answered = true;
                self.ack_pending = true;
                self.since_ack = 0;
            }
            return None;
        }
        let offset = self.bytes;
        if offset.saturating_add(len) > self.quota {
            self.core.fail_with(ErrorCode::DiskFull, "disk full or allocation exceeded");
            return None;
        }
        self.received = expected;
        self.bytes += len;
        self.since_ack += 1;
        self.gap_answered = false;
        self.core.progress(now);
        let last = len < self.blksize;
        if last {
            tracing::debug!(peer = %self.core.peer, bytes = self.bytes, "final block; dallying (RFC 1350 §6)");
            self.phase = Phase::Dallying { acked: false };
            self.ack_pending = true;
            self.core.deadline = Some(now.checked_add(self.core.settings.dally).unwrap_or(now));
        } else {
            if self.since_ack >= self.window {
                self.ack_pending = true;
                self.since_ack = 0;
            }
            self.core.arm(now);
        }
        let start = DATA_HEADER_LEN;
        Some(WriteChunk { offset, data: start..start + data.len(), last })
    }

    /// Lets timers run; call when `now` reaches [`WriteTransfer::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.core.expired(now) {
            return;
        }
        match &mut self.phase {
            Phase::Greeting { retransmits, pending } => {
                self.core.unproven_timeout(retransmits, pending, now);
            }
            Phase::Receiving => {
                // RFC 1350 §2 / RFC 7440 §4: the receiver repeats its last ACK on timeout.
                if self.core.backoff(now) {
                    tracing::debug!(peer = %self.core.peer, received = self.received, "timeout: re-ACK");
                    self.ack_pending = true;
                    self.since_ack = 0;
                }
            }
            Phase::Dallying { .. } => self.complete(),
        }
    }

    fn complete(&mut self) {
        self.core.finish(Outcome::Complete { bytes: self.bytes, confirmed: true });
    }

    /// Next datagram to send; call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(next) = self.core.queued() {
            return next;
        }
        let to = self.core.peer;
        if let Phase::Greeting { pending, .. } = &mut self.phase {
            if std::mem::take(pending) {
                return Some(Transmit::Datagram { to, packet: self.greeting });
            }
            return None;
        }
        if std::mem::take(&mut self.ack_pending) {
            if let Phase::Dallying { acked } = &mut self.phase {
                *acked = true;
            }
            let block = self.core.settings.block_wrap.wire(self.received);
            return Some(Transmit::Datagram { to, packet: Datagram::ack(block) });
        }
        None
    }

    /// True once the outcome is decided: the final ACK went out and only the dally
    /// (RFC 1350 §6) remains, or the transfer ended. A new request from the client's TID
    /// is then a new transfer, not a repeat of this one.
    #[must_use]
    pub fn settled(&self) -> bool {
        matches!(self.phase, Phase::Dallying { acked: true }) || self.core.outcome.is_some()
    }

    /// When to call [`WriteTransfer::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Payload bytes accepted so far (what a failed upload delivered).
    #[must_use]
    pub fn bytes_acknowledged(&self) -> u64 {
        self.bytes
    }

    /// `Some` once the transfer ended: drain `poll_transmit`, then free it.
    #[must_use]
    pub fn outcome(&self) -> Option<Outcome> {
        self.core.outcome.clone()
    }

    /// Ends the transfer from the io side (write failed, disk full): drops any pending ACK
    /// and sends ERROR instead. Once settled (the final ACK went out, the upload is
    /// committed) it only ends the dally: an ERROR after the final ACK would contradict it.
    pub fn abort(&mut self, code: ErrorCode, message: &'static str) {
        self.ack_pending = false;
        if self.settled() {
            if self.core.outcome.is_none() {
                self.complete();
            }
            return;
        }
        self.core.abort(code, message);
    }
}
