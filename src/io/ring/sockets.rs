//! Time-bounded operations on non-blocking sockets through the ring: an op that outlives
//! its deadline is woken by shutting the socket down and then awaited (never dropped in
//! flight), plus the cancel handle a transfer's control side uses to wake whatever it waits on.

use super::ops::{self, SharedFd};
use super::zerocopy::AbortHandle;
use socket2::SockRef;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

pub fn shutdown(fd: RawFd) {
    let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
}

pub fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

pub fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS | libc::EALREADY))
}

/// Runs `op` (an io_uring op on socket `fd`) until `deadline`. On expiry the socket is shut
/// down so the op completes now; it is awaited either way and its output returned, with
/// `true` when the deadline struck (dropping an op in flight would not cancel it).
pub async fn bounded<O>(fd: RawFd, deadline: Instant, op: impl Future<Output = O>) -> (O, bool) {
    tokio::pin!(op);
    tokio::select! {
        out = &mut op => (out, false),
        _ = tokio::time::sleep_until(deadline) => {
            shutdown(fd);
            (op.await, true)
        }
    }
}

/// Waits until `sock` is ready for `events`, at most until `deadline`.
pub async fn ready(sock: &SharedFd, events: i16, deadline: Instant) -> io::Result<()> {
    match bounded(sock.as_raw_fd(), deadline, ops::poll(sock, events)).await {
        (_, true) => Err(timed_out("data connection")),
        (res, false) => res.map(|_| ()),
    }
}

/// Cancels a transfer from the control side (ABOR, client gone): marks it, shuts down the
/// socket its current op waits on (listener, connecting or connected socket) and aborts
/// the zero-copy loop.
#[derive(Debug, Default)]
pub struct Cancel {
    aborted: Cell<bool>,
    waiting_on: RefCell<Option<SharedFd>>,
    /// Handed to the zero-copy functions.
    pub zero_copy: AbortHandle,
}

impl Cancel {
    /// Aborts the transfer.
    pub fn abort(&self) {
        self.aborted.set(true);
        if let Some(fd) = self.waiting_on.borrow().as_ref() {
            shutdown(fd.as_raw_fd());
        }
        self.zero_copy.abort();
    }

    /// True once aborted.
    pub fn is_aborted(&self) -> bool {
        self.aborted.get()
    }

    /// Names the socket that `abort` must wake.
    pub fn watch(&self, fd: &SharedFd) -> io::Result<()> {
        *self.waiting_on.borrow_mut() = Some(Rc::clone(fd));
        if self.is_aborted() {
            shutdown(fd.as_raw_fd());
            return Err(super::zerocopy::aborted());
        }
        Ok(())
    }
}

/// The local and remote addresses of a connected socket, for logs.
pub fn endpoints(sock: &SharedFd) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let s = SockRef::from(sock.as_ref());
    (s.local_addr().ok().and_then(|a| a.as_socket()), s.peer_addr().ok().and_then(|a| a.as_socket()))
}

/// Sends all of `buf` on a non-blocking socket; each wait is bounded by `stall`. Returns the
/// emptied buffer for reuse.
pub async fn send_all(sock: &SharedFd, mut buf: Vec<u8>, stall: Duration) -> io::Result<Vec<u8>> {
    // What is sent is skipped by an offset, not drained: after a partial send the rest of a
    // large buffer is not moved to its front.
    let mut sent = 0;
    while sent < buf.len() {
        let deadline = Instant::now() + stall;
        let ((res, back), expired) = bounded(sock.as_raw_fd(), deadline, ops::send(sock, buf, sent)).await;
        buf = back;
        if expired {
            return Err(timed_out("data send"));
        }
        match res {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => sent += n as usize,
            Err(e) if would_block(&e) => ready(sock, libc::POLLOUT, deadline).await?,
            Err(e) => return Err(e),
        }
    }
    buf.clear();
    Ok(buf)
}

/// Receives into `buf`'s capacity (its length becomes what arrived; 0 at end of stream).
pub async fn recv_some(sock: &SharedFd, mut buf: Vec<u8>, stall: Duration) -> io::Result<Vec<u8>> {
    loop {
        let deadline = Instant::now() + stall;
        let ((res, back), expired) = bounded(sock.as_raw_fd(), deadline, ops::recv(sock, buf)).await;
        buf = back;
        if expired {
            return Err(timed_out("data receive"));
        }
        match res {
            Ok(_) => return Ok(buf),
            Err(e) if would_block(&e) => ready(sock, libc::POLLIN, deadline).await?,
            Err(e) => return Err(e),
        }
    }
}
