//! Inboxes: the bounded queues a transfer's datagrams wait in when something other than the
//! transfer receives them: in single-port mode, the request socket's loop.

use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::udp_msg::Received;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::sync::Notify;

/// Datagrams an inbox holds before it drops new ones: two full windows at the default
/// `max_windowsize`. A client that outruns its transfer loses datagrams, as it would in a
/// full socket buffer, and its retransmission repairs that; memory stays bounded.
pub const INBOX_DEPTH: usize = 128;

/// One received datagram and the buffer holding it.
pub type Delivery = (io::Result<Received>, Vec<u8>);

/// The datagrams routed to one single-port transfer, oldest first.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: RefCell<VecDeque<Delivery>>,
    /// Stores a wake-up when nobody waits, so a push between a check and a wait is not lost.
    ready: Notify,
    /// Datagrams dropped because the inbox was full.
    dropped: Cell<u64>,
}

impl Inbox {
    /// Queues a datagram; gives the buffer back when the inbox is full.
    pub fn push(&self, delivery: Delivery) -> Option<Vec<u8>> {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= INBOX_DEPTH {
            self.dropped.set(self.dropped.get() + 1);
            return Some(delivery.1);
        }
        queue.push_back(delivery);
        drop(queue);
        self.ready.notify_one();
        None
    }

    /// The oldest datagram waiting.
    pub fn pop(&self) -> Option<Delivery> {
        self.queue.borrow_mut().pop_front()
    }

    /// The next datagram, waiting for one to be pushed.
    pub async fn next(&self) -> Delivery {
        loop {
            if let Some(d) = self.pop() {
                return d;
            }
            self.ready.notified().await;
        }
    }

    /// Gives every waiting datagram's buffer back to `pool`.
    pub fn clear(&self, pool: &BufPool) {
        while let Some((_, buf)) = self.pop() {
            pool.give(buf);
        }
    }

    /// Datagrams dropped so far because the transfer did not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// The single-port routing table of one request socket: client TID -> its transfer's inbox.
#[derive(Debug, Default)]
pub struct Routes {
    by_peer: RefCell<HashMap<SocketAddr, Rc<Inbox>>>,
}

impl Routes {
    /// Opens an inbox for `peer`, replacing one a settled transfer (an upload dallying after
    /// its final ACK) may still hold; that transfer then only waits out its timer.
    pub fn open(self: &Rc<Self>, peer: SocketAddr) -> Route {
        let inbox = Rc::new(Inbox::default());
        self.by_peer.borrow_mut().insert(peer, Rc::clone(&inbox));
        Route { routes: Rc::clone(self), peer, inbox }
    }

    /// The inbox of `peer`'s running transfer, if it has one on this socket.
    pub fn get(&self, peer: &SocketAddr) -> Option<Rc<Inbox>> {
        self.by_peer.borrow().get(peer).cloned()
    }

    /// Transfers routed through this socket.
    pub fn len(&self) -> usize {
        self.by_peer.borrow().len()
    }

    /// True when no transfer is routed through this socket.
    pub fn is_empty(&self) -> bool {
        self.by_peer.borrow().is_empty()
    }
}

/// A transfer's entry in [`Routes`]; removed on drop unless a newer transfer took the peer.
#[derive(Debug)]
pub struct Route {
    routes: Rc<Routes>,
    peer: SocketAddr,
    inbox: Rc<Inbox>,
}

impl Route {
    /// The inbox the request socket's loop delivers to.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let mut table = self.routes.by_peer.borrow_mut();
        if table.get(&self.peer).is_some_and(|i| Rc::ptr_eq(i, &self.inbox)) {
            table.remove(&self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: u8) -> Delivery {
        let r = Received { len: 1, from: None, local: None, truncated: false, broadcast: false };
        (Ok(r), vec![n])
    }

    #[test]
    fn an_inbox_is_bounded_and_keeps_order() {
        let inbox = Inbox::default();
        for i in 0..INBOX_DEPTH {
            assert!(inbox.push(delivery(i as u8)).is_none());
        }
        assert_eq!(inbox.push(delivery(0)), Some(vec![0]), "a full inbox hands the buffer back");
        assert_eq!(inbox.dropped(), 1);
        assert_eq!(inbox.pop().map(|d| d.1), Some(vec![0]));
        assert_eq!(inbox.pop().map(|d| d.1), Some(vec![1]));
    }

    #[test]
    fn a_route_leaves_the_table_unless_a_newer_transfer_took_the_peer() {
        let routes = Rc::new(Routes::default());
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let old = routes.open(peer);
        assert!(routes.get(&peer).is_some_and(|i| Rc::ptr_eq(&i, &old.inbox)));
        let new = routes.open(peer);
        drop(old);
        assert!(routes.get(&peer).is_some_and(|i| Rc::ptr_eq(&i, &new.inbox)), "the newer route stays");
        drop(new);
        assert!(routes.is_empty());
    }
}
