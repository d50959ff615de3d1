//! Where a transfer's datagrams come from: its own socket (the RFC's fresh server TID), read
//! by the worker's pump or by a ring receive of its own, or in single-port mode an inbox that
//! the request socket's loop fills, routed by client address.

use super::inbox::{Delivery, Inbox, Route};
use super::pump::PumpEntry;
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::ops::SharedFd;
use crate::io::ring::udp_msg::{self, RecvOp};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A transfer's receive side.
pub enum Inlet {
    /// The transfer's own socket, read by the worker's pump into the entry's inbox.
    Pumped { entry: PumpEntry },
    /// The transfer's own socket, with the ring receive kept armed between rounds (where
    /// the pump could not take the socket).
    Own { sock: SharedFd, pending: Option<RecvOp> },
    /// Single-port mode: the request socket's loop delivers into this route's inbox.
    Shared { route: Route },
}

impl Inlet {
    /// The next datagram. Cancel-safe: dropped while waiting, nothing is lost (an armed ring
    /// receive stays in `pending`, an inbox keeps its queue).
    pub async fn next(&mut self, pool: &BufPool) -> Delivery {
        match self {
            Inlet::Own { sock, pending } => {
                let op = pending.get_or_insert_with(|| udp_msg::recv_msg(sock, pool.take()));
                let delivery = op.await;
                *pending = None;
                delivery
            }
            Inlet::Pumped { entry } => entry.inbox().next().await,
            Inlet::Shared { route } => route.inbox().next().await,
        }
    }

    /// A datagram already waiting, without waiting for one.
    pub fn try_next(&mut self, pool: &BufPool) -> Option<Delivery> {
        match self {
            Inlet::Own { sock, .. } => match udp_msg::try_recv_msg(sock, pool.take()) {
                (Ok(Some(r)), buf) => Some((Ok(r), buf)),
                (Ok(None), buf) => {
                    pool.give(buf);
                    None
                }
                (Err(e), buf) => Some((Err(e), buf)),
            },
            // What the pump has not taken yet is read on the spot: a worker that wakes
            // late must still see a waiting ACK before it handles its timer.
            Inlet::Pumped { entry } => {
                entry.inbox().pop().or_else(|| match udp_msg::try_recv_msg(entry.sock(), pool.take()) {
                    (Ok(Some(r)), buf) => Some((Ok(r), buf)),
                    (Ok(None), buf) => {
                        pool.give(buf);
                        None
                    }
                    (Err(e), buf) => Some((Err(e), buf)),
                })
            }
            Inlet::Shared { route } => route.inbox().pop(),
        }
    }

    /// Releases the receive side: wakes and collects an armed ring receive (shutdown(2) on
    /// the transfer's own socket), or leaves the routing table. Never touches a shared socket.
    pub async fn close(self, pool: &BufPool) {
        match self {
            Inlet::Own { sock, pending } => {
                let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
                if let Some(op) = pending {
                    if let Ok((_, buf)) = tokio::time::timeout(Duration::from_secs(1), op).await {
                        pool.give(buf);
                    }
                }
            }
            Inlet::Pumped { entry } => {
                // Leaves the pump's set first, so nothing is delivered after the clear.
                let inbox = entry.inbox_rc();
                drop(entry);
                report_overflow(&inbox);
                inbox.clear(pool);
            }
            Inlet::Shared { route } => {
                report_overflow(route.inbox());
                route.inbox().clear(pool);
            }
        }
    }
}

fn report_overflow(inbox: &Inbox) {
    let dropped = inbox.dropped();
    if dropped > 0 {
        tracing::debug!(dropped, "transfer inbox overflowed");
    }
}
