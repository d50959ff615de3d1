//! One readiness wait for all of a worker's per-transfer sockets: an epoll set polled through
//! the ring, drained with non-blocking receives into each transfer's inbox. An ACK then costs
//! one recvmsg, not a ring receive of its own (armed, completed, reaped and woken per packet).

use super::inbox::Inbox;
use crate::io::context::WorkerContext;
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::udp_msg;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::debug;

/// Ready sockets taken per epoll_wait; more wait for the next round (level-triggered).
const EVENTS: usize = 256;

/// The worker's set of transfer sockets.
pub struct Pump {
    epoll: Rc<Epoll>,
    members: RefCell<HashMap<u64, Member>>,
    next: Cell<u64>,
    pool: Rc<BufPool>,
    /// Raised when the last member leaves, so a stopping pump can end.
    emptied: Notify,
}

struct Member {
    sock: SharedFd,
    inbox: Rc<Inbox>,
    burst: usize,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump").field("members", &self.members.borrow().len()).finish()
    }
}

/// A socket in the pump; leaves the set when dropped.
#[derive(Debug)]
pub struct PumpEntry {
    pump: Rc<Pump>,
    token: u64,
    sock: SharedFd,
    inbox: Rc<Inbox>,
}

impl PumpEntry {
    /// The inbox its datagrams are delivered to.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The inbox, shared.
    pub fn inbox_rc(&self) -> Rc<Inbox> {
        Rc::clone(&self.inbox)
    }

    /// The socket itself, for a receive that cannot wait for the pump's next round.
    pub fn sock(&self) -> &SharedFd {
        &self.sock
    }
}

impl Drop for PumpEntry {
    fn drop(&mut self) {
        let _ = self.pump.epoll.delete(&*self.sock);
        let mut members = self.pump.members.borrow_mut();
        members.remove(&self.token);
        if members.is_empty() {
            self.pump.emptied.notify_one();
        }
    }
}

impl Pump {
    /// An empty set drawing receive buffers from `pool`.
    pub fn new(pool: Rc<BufPool>) -> io::Result<Rc<Pump>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        Ok(Rc::new(Pump {
            epoll: Rc::new(epoll),
            members: RefCell::default(),
            next: Cell::new(0),
            pool,
            emptied: Notify::new(),
        }))
    }

    /// Adds a non-blocking socket; at most `burst` datagrams are taken from it per round (1
    /// for a lock-step sender, whose one ACK is all there is; a window for an upload).
    pub fn register(self: &Rc<Self>, sock: SharedFd, burst: usize) -> io::Result<PumpEntry> {
        let token = self.next.get();
        self.next.set(token.wrapping_add(1));
        self.epoll.add(&*sock, EpollEvent::new(EpollFlags::EPOLLIN, token)).map_err(io::Error::from)?;
        let inbox = Rc::new(Inbox::default());
        let member = Member { sock: Rc::clone(&sock), inbox: Rc::clone(&inbox), burst: burst.max(1) };
        self.members.borrow_mut().insert(token, member);
        Ok(PumpEntry { pump: Rc::clone(self), token, sock, inbox })
    }

    /// Delivers datagrams until shutdown has begun and every member has left.
    pub async fn run(self: Rc<Self>, ctx: Rc<WorkerContext>) {
        let mut events = vec![EpollEvent::empty(); EVENTS];
        let mut stopping = false;
        let mut wait: Option<Pin<Box<dyn Future<Output = io::Result<u32>>>>> = None;
        loop {
            if stopping && self.members.borrow().is_empty() {
                break;
            }
            let raw = self.epoll.0.as_raw_fd();
            let op = wait
                .get_or_insert_with(|| Box::pin(ops::poll_owned(Rc::clone(&self.epoll), raw, libc::POLLIN)));
            tokio::select! {
                biased;
                r = op => {
                    wait = None;
                    if let Err(e) = r {
                        debug!("transfer socket poll failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                _ = ctx.wait_shutdown(), if !stopping => {
                    stopping = true;
                    continue;
                }
                _ = self.emptied.notified(), if stopping => continue,
            }
            self.drain(&mut events);
        }
    }

    /// Takes what every ready socket holds, round after round while rounds come back full.
    fn drain(&self, events: &mut [EpollEvent]) {
        loop {
            let n = match self.epoll.wait(events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(e) => {
                    debug!("epoll_wait failed: {e}");
                    return;
                }
            };
            for ev in events.iter().take(n) {
                self.take(ev.data());
            }
            if n < events.len() {
                return;
            }
        }
    }

    /// Moves up to the member's burst of datagrams from its socket into its inbox.
    fn take(&self, token: u64) {
        let Some((sock, inbox, burst)) =
            self.members.borrow().get(&token).map(|m| (Rc::clone(&m.sock), Rc::clone(&m.inbox), m.burst))
        else {
            return;
        };
        for _ in 0..burst {
            match udp_msg::try_recv_msg(&sock, self.pool.take()) {
                (Ok(Some(r)), buf) => {
                    if let Some(buf) = inbox.push((Ok(r), buf)) {
                        self.pool.give(buf);
                    }
                }
                (Ok(None), buf) => {
                    self.pool.give(buf);
                    return;
                }
                (Err(e), buf) => {
                    if let Some(buf) = inbox.push((Err(e), buf)) {
                        self.pool.give(buf);
                    }
                    return;
                }
            }
        }
    }
}
