//! Transfer state machines: [`ReadTransfer`] (RRQ, we send DATA) and [`WriteTransfer`] (WRQ,
//! we receive DATA). No IO and no clock: the io layer feeds datagrams and timeouts with
//! `now`, then drains `poll_transmit` and checks `outcome`. Shared pieces live here.

mod read;
mod write;

pub use read::ReadTransfer;
pub use write::{WriteChunk, WriteTransfer};

use super::options::Negotiation;
use super::wire::{Datagram, ErrorCode, Opcode, Packet};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the wire block number does after 65535 (RFC 1350 leaves it open; RFC 7440 §4 and
/// most clients expect 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockWrap {
    /// 65535 is followed by 0 (tftp-hpa, iPXE, U-Boot, UEFI).
    #[default]
    Zero,
    /// 65535 is followed by 1 (a few old clients).
    One,
}

impl BlockWrap {
    /// Number of distinct wire values in the cycle.
    fn modulus(self) -> u64 {
        match self {
            BlockWrap::Zero => 65536,
            BlockWrap::One => 65535,
        }
    }

    /// Wire number of absolute block `n` (block 1 is the first DATA; 0 is the OACK's ACK).
    pub fn wire(self, n: u64) -> u16 {
        let w = match self {
            BlockWrap::Zero => n % 65536,
            BlockWrap::One if n == 0 => 0,
            BlockWrap::One => (n - 1) % 65535 + 1,
        };
        u16::try_from(w).unwrap_or(0)
    }

    /// How far wire number `to` lies ahead of absolute block `from`, within one cycle.
    fn distance(self, from: u64, to: u16) -> u64 {
        let m = self.modulus();
        (u64::from(to) + m - u64::from(self.wire(from)) % m) % m
    }
}

/// Timing and limits of transfers, from `[tftp]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferSettings {
    /// Base retransmission timeout when the client did not negotiate `timeout`; also the
    /// fixed interval (the client's timeout when shorter) before the client proved its
    /// address and once every block was sent.
    pub timeout: Duration,
    /// Give up after this long without progress (RFC 1350 §2: a timeout ends the transfer),
    /// whatever `timeout` the client negotiated.
    pub max_retransmit_time: Duration,
    /// Retransmissions of the first packet before the client proved its address: such a
    /// transfer is dropped after `1 + unproven_retransmits` timeouts.
    pub unproven_retransmits: u32,
    /// RRQ: once every block was sent, end after this many silent timeouts (lost final ACK):
    /// a last block never acknowledged holds the transfer `1 + final_retransmits` timeouts.
    pub final_retransmits: u32,
    /// WRQ: how long to stay after the final ACK to answer a repeated last DATA (RFC 1350 §6).
    pub dally: Duration,
    /// Block number wrap-around.
    pub block_wrap: BlockWrap,
    /// WRQ: largest upload in bytes (ERROR 3 beyond it).
    pub upload_quota: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings {
            timeout: Duration::from_secs(1),
            max_retransmit_time: Duration::from_secs(20),
            unproven_retransmits: 3,
            final_retransmits: 3,
            dally: Duration::from_secs(5),
            block_wrap: BlockWrap::Zero,
            upload_quota: 64 << 20,
        }
    }
}

/// One thing for the io layer to send from the transfer's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// A complete datagram (OACK, ACK or ERROR) to send as is.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Bytes to send.
        packet: Datagram,
    },
    /// A DATA block: write the header with [`super::wire::write_data_header`]`(buf, block)`,
    /// read `len` bytes of the file at `offset` into `buf[4..]`, send `buf[..4 + len]`.
    Data {
        /// Destination.
        to: SocketAddr,
        /// Wire block number.
        block: u16,
        /// Offset in the (for netascii: converted) file.
        offset: u64,
        /// Payload length; less than blksize only for the last block (possibly 0).
        len: usize,
    },
}

/// How a transfer ended; once `Some`, drain `poll_transmit` and free the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte went through.
    Complete {
        /// Payload bytes transferred.
        bytes: u64,
        /// False when the final ACK never came and the sender gave up waiting for it.
        confirmed: bool,
    },
    /// The transfer ended early.
    Failed {
        /// Why.
        reason: FailReason,
    },
    /// The client answered our OACK with ERROR 8 (RFC 2347: it declines the options) before
    /// any data moved. Nothing failed: UEFI (EDK2) does this on purpose to learn a file's
    /// size from `tsize`, then asks again from a new port.
    OptionsDeclined,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// The peer sent ERROR (RFC 1350 §7), other than ERROR 8 to the OACK.
    #[error("peer aborted with ERROR {code}: {message}")]
    PeerAborted {
        /// The peer's raw error code.
        code: u16,
        /// The peer's message, lossily decoded.
        message: String,
    },
    /// The client never acknowledged our first packet: possibly a spoofed request.
    #[error("client never acknowledged the first packet")]
    Unproven,
    /// No progress for `max_retransmit_time`.
    #[error("timed out")]
    TimedOut,
    /// We ended it with an ERROR (illegal packet, quota) or the io layer called `abort`.
    #[error("ended with ERROR {code:?}: {message}")]
    Local {
        /// Code we sent.
        code: ErrorCode,
        /// Message we sent.
        message: &'static str,
    },
}

/// Cap on queued control datagrams, so a flood of stray packets cannot grow memory.
const MAX_QUEUED: usize = 8;

/// State both directions share: peer identity, control queue, retransmission timer.
#[derive(Debug)]
struct Core {
    peer: SocketAddr,
    queue: VecDeque<Transmit>,
    outcome: Option<Outcome>,
    settings: TransferSettings,
    /// Current retransmission timeout; doubles on each timeout, resets on progress.
    rto: Duration,
    /// The client's RFC 2349 timeout, else the server's: paces a proven transfer.
    base_rto: Duration,
    /// The server's own clock (the client's timeout when shorter), for the phases where
    /// the peer may be absent or spoofed: before it proved its address, and once every
    /// block was sent. A client's long `timeout` must not hold a slot there.
    short_rto: Duration,
    deadline: Option<Instant>,
    last_progress: Instant,
    /// An OACK went out and no data has moved since: ERROR 8 now declines the options.
    oack_unanswered: bool,
}

impl Core {
    fn new(peer: SocketAddr, negotiation: &Negotiation, settings: &TransferSettings, now: Instant) -> Core {
        let timeout_secs = negotiation.values.timeout_secs;
        let base = timeout_secs.map_or(settings.timeout, |s| Duration::from_secs(u64::from(s)));
        let short = base.min(settings.timeout);
        Core {
            peer,
            queue: VecDeque::with_capacity(2),
            outcome: None,
            settings: *settings,
            // Every transfer starts unproven.
            rto: short,
            base_rto: base,
            short_rto: short,
            deadline: None,
            last_progress: now,
            oack_unanswered: negotiation.oack.is_some(),
        }
    }

    fn push(&mut self, t: Transmit) {
        if self.queue.len() < MAX_QUEUED {
            self.queue.push_back(t);
        }
    }

    /// Filters an incoming datagram: a stray source, garbage or a peer ERROR is dealt with
    /// here (`None`); what is left is a parsed packet from the peer.
    fn screen<'a>(&mut self, from: SocketAddr, bytes: &'a [u8]) -> Option<super::wire::Repr<'a>> {
        if self.outcome.is_some() {
            return None;
        }
        if from != self.peer {
            // RFC 1350 §4: answer a stray source with ERROR 5 and leave the transfer alone;
            // never answer an ERROR with an ERROR (two servers could loop).
            let is_error = Packet::new_unchecked(bytes).opcode() == Some(Opcode::Error);
            if !is_error {
                tracing::debug!(%from, peer = %self.peer, "datagram from unknown transfer ID");
                self.push(Transmit::Datagram {
                    to: from,
                    packet: Datagram::error(ErrorCode::UnknownTransferId, "unknown transfer ID"),
                });
            }
            return None;
        }
        match super::wire::Repr::parse_bytes(bytes) {
            Ok(super::wire::Repr::Error { code, message }) => {
                let message = String::from_utf8_lossy(message).into_owned();
                tracing::debug!(peer = %self.peer, code, %message, "peer aborted the transfer");
                if code == ErrorCode::OptionNegotiation as u16 && self.oack_unanswered {
                    self.finish(Outcome::OptionsDeclined);
                } else {
                    self.finish(Outcome::Failed { reason: FailReason::PeerAborted { code, message } });
                }
                None
            }
            Ok(repr) => Some(repr),
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "malformed datagram from peer");
                self.fail_with(ErrorCode::IllegalOperation, "illegal TFTP operation");
                None
            }
        }
    }

    /// Sends ERROR `code` to the peer and fails (RFC 1350 §7: an ERROR ends the transfer).
    fn fail_with(&mut self, code: ErrorCode, message: &'static str) {
        self.push(Transmit::Datagram { to: self.peer, packet: Datagram::error(code, message) });
        self.finish(Outcome::Failed { reason: FailReason::Local { code, message } });
    }

    /// What goes out before a machine's own sends: a queued datagram (an ERROR, a reply to a
    /// stray TID), or nothing more once the transfer has ended. `None`: the phase decides.
    fn queued(&mut self) -> Option<Option<Transmit>> {
        if let Some(t) = self.queue.pop_front() {
            return Some(Some(t));
        }
        self.outcome.is_some().then_some(None)
    }

    fn finish(&mut self, outcome: Outcome) {
        tracing::debug!(peer = %self.peer, ?outcome, "transfer finished");
        self.deadline = None;
        self.outcome = Some(outcome);
    }

    fn progress(&mut self, now: Instant) {
        self.last_progress = now;
        self.rto = self.base_rto;
        self.oack_unanswered = false;
    }

    /// When the transfer gives up if nothing moves: `max_retransmit_time` after the last
    /// progress, however long the client's RFC 2349 timeout (a slot is never held longer);
    /// checked so no setting can overflow.
    fn give_up_at(&self) -> Instant {
        // A day caps absurd settings so the addition cannot overflow `Instant`.
        let after = self.settings.max_retransmit_time.min(Duration::from_secs(86_400));
        self.last_progress.checked_add(after).unwrap_or(self.last_progress)
    }

    fn arm(&mut self, now: Instant) {
        let give_up = self.give_up_at().max(now);
        // At most half the give-up time, so a timeout longer than that still gets one
        // retransmission before the transfer is given up.
        let wait = self.rto.min(self.settings.max_retransmit_time / 2);
        self.deadline = Some(now.checked_add(wait).map_or(give_up, |at| at.min(give_up)));
    }

    /// Arms the short clock: before the client proved its address, and for the window that
    /// holds the last block, whose silence more likely means a client gone than a slow one.
    fn arm_short(&mut self, now: Instant) {
        self.rto = self.short_rto;
        self.arm(now);
    }

    /// True when the deadline passed and the transfer is still running.
    fn expired(&self, now: Instant) -> bool {
        self.outcome.is_none() && self.deadline.is_some_and(|d| now >= d)
    }

    /// The pending deadline, none once ended.
    fn poll_timeout(&self) -> Option<Instant> {
        self.outcome.as_ref().map_or(self.deadline, |_| None)
    }

    /// Ends from the io side with an ERROR to the peer, unless already ended.
    fn abort(&mut self, code: ErrorCode, message: &'static str) {
        if self.outcome.is_none() {
            self.fail_with(code, message);
        }
    }

    /// Timeout before the client proved its address: queue the first packet again, at most
    /// `unproven_retransmits` times, then drop the transfer without a word (a spoofed
    /// request must not reflect more than `1 + unproven_retransmits` packets). The interval
    /// stays at the short clock, without backoff: a spoofed request holds its slot for
    /// `(1 + unproven_retransmits) x` the server's timeout, whatever `timeout` it asked.
    fn unproven_timeout(&mut self, retransmits: &mut u32, pending: &mut bool, now: Instant) {
        if *retransmits >= self.settings.unproven_retransmits || now >= self.give_up_at() {
            tracing::debug!(peer = %self.peer, "client never answered; dropping (amplification guard)");
            self.finish(Outcome::Failed { reason: FailReason::Unproven });
            return;
        }
        *retransmits += 1;
        *pending = true;
        tracing::debug!(peer = %self.peer, retransmits = *retransmits, "retransmitting first packet");
        self.arm_short(now);
    }

    /// Doubles the timeout (exponential backoff) and rearms; fails when out of time.
    fn backoff(&mut self, now: Instant) -> bool {
        self.retry(now, self.rto.saturating_mul(2))
    }

    /// Rearms on the short clock, without backoff; fails when out of time.
    fn retry_short(&mut self, now: Instant) -> bool {
        self.retry(now, self.short_rto)
    }

    /// Rearms with timeout `rto` after a timeout; fails when out of time.
    fn retry(&mut self, now: Instant, rto: Duration) -> bool {
        if now >= self.give_up_at() {
            tracing::debug!(peer = %self.peer, "giving up: no progress within max_retransmit_time");
            self.finish(Outcome::Failed { reason: FailReason::TimedOut });
            return false;
        }
        self.rto = rto;
        self.arm(now);
        true
    }
}

#[cfg(test)]
mod sim_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_wrap_per_setting() {
        assert_eq!(BlockWrap::Zero.wire(65535), 65535);
        assert_eq!(BlockWrap::Zero.wire(65536), 0);
        assert_eq!(BlockWrap::Zero.wire(65537), 1);
        assert_eq!(BlockWrap::One.wire(65535), 65535);
        assert_eq!(BlockWrap::One.wire(65536), 1);
        assert_eq!(BlockWrap::One.wire(0), 0);
        assert_eq!(BlockWrap::Zero.distance(65535, 2), 3);
        assert_eq!(BlockWrap::One.distance(65535, 2), 2);
        assert_eq!(BlockWrap::Zero.distance(10, 10), 0);
    }
}
