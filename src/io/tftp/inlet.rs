//! Where a socket's datagrams come from: a request socket or a transfer's own socket (the
//! RFC's fresh server TID), watched by the runtime's reactor (or read by a ring receive of its
//! own), or for a single-port transfer an inbox that the request socket's loop fills.

use super::inbox::{Delivery, Inbox, Route};
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::ops::{self, SharedFd, Watched};
use crate::io::ring::udp_msg::{self, Received, RecvOp};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// A receive side.
pub enum Inlet {
    /// The transfer's own socket, watched by the runtime's reactor (tokio's epoll), which
    /// the worker thread already waits in: an ACK wakes the transfer's task directly and costs
    /// one recvmsg. A ring receive per ACK cost more (armed, failed once, polled, completed,
    /// reaped), and so did a worker-wide epoll set behind a ring poll (two more hops).
    Watched(AsyncFd<Watched>),
    /// The transfer's own socket, with the ring receive kept armed between rounds (where the
    /// reactor could not take the socket).
    Own { sock: SharedFd, pending: Option<RecvOp> },
    /// Single-port mode: the request socket's loop delivers into this route's inbox.
    Shared { route: Route },
}

impl Inlet {
    /// The receive side of a socket of our own.
    pub fn own(sock: SharedFd) -> Inlet {
        match ops::watch(std::rc::Rc::clone(&sock)) {
            Ok(fd) => Inlet::Watched(fd),
            Err(e) => {
                tracing::debug!("transfer socket not watched by the reactor: {e}");
                Inlet::Own { sock, pending: None }
            }
        }
    }

    /// The next datagram. Cancel-safe: dropped while waiting, nothing is lost (readiness is
    /// only cleared on an empty socket, an armed ring receive stays in `pending`, an inbox
    /// keeps its queue).
    pub async fn next(&mut self, pool: &BufPool) -> Delivery {
        match self {
            Inlet::Watched(fd) => loop {
                let mut ready = match fd.readable().await {
                    Ok(ready) => ready,
                    Err(e) => return (Err(e), pool.take()),
                };
                match udp_msg::try_recv_msg(fd.get_ref().sock(), pool.take()) {
                    (Ok(Some(r)), buf) => return (Ok(r), buf),
                    // shutdown(2) makes the socket readable yet a non-blocking receive
                    // finds nothing: report it as a receive woken without a datagram (what a
                    // blocking one returns), rather than wait for an event that never comes.
                    (Ok(None), buf) if ready.ready().is_read_closed() => {
                        let woken =
                            Received { len: 0, from: None, local: None, truncated: false, broadcast: false };
                        return (Ok(woken), buf);
                    }
                    (Ok(None), buf) => {
                        pool.give(buf);
                        ready.clear_ready();
                    }
                    (Err(e), buf) => return (Err(e), buf),
                }
            },
            Inlet::Own { sock, pending } => {
                let op = pending.get_or_insert_with(|| udp_msg::recv_msg(sock, pool.take()));
                let delivery = op.await;
                *pending = None;
                delivery
            }
            Inlet::Shared { route } => route.inbox().next().await,
        }
    }

    /// Whether [`Inlet::try_next`] may be called in a loop: not while a ring receive of
    /// its own may be armed, which would race the loop for the datagram.
    pub fn pollable(&self) -> bool {
        !matches!(self, Inlet::Own { .. })
    }

    /// A datagram already waiting, without waiting for one.
    pub fn try_next(&mut self, pool: &BufPool) -> Option<Delivery> {
        let sock = match self {
            Inlet::Watched(fd) => fd.get_ref().sock(),
            Inlet::Own { sock, .. } => &*sock,
            Inlet::Shared { route } => return route.inbox().pop(),
        };
        match udp_msg::try_recv_msg(sock, pool.take()) {
            (Ok(Some(r)), buf) => Some((Ok(r), buf)),
            (Ok(None), buf) => {
                pool.give(buf);
                None
            }
            (Err(e), buf) => Some((Err(e), buf)),
        }
    }

    /// Releases the receive side: leaves the reactor, wakes and collects an armed ring
    /// receive (shutdown(2) on the transfer's own socket), or leaves the routing table.
    /// Never touches a shared socket.
    pub async fn close(self, pool: &BufPool) {
        match self {
            Inlet::Watched(fd) => drop(fd.into_inner()),
            Inlet::Own { sock, pending } => {
                let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
                if let Some(op) = pending {
                    if let Ok((_, buf)) = tokio::time::timeout(Duration::from_secs(1), op).await {
                        pool.give(buf);
                    }
                }
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
