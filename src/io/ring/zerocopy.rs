//! Zero-copy data movement for FTP binary transfers: file pages go to the socket (and
//! socket bytes to the file) through a pipe with io_uring splice, or with sendfile(2),
//! never through user space. Stalls are bounded by a progress deadline, and an abort or a
//! timeout shuts the socket down and waits for the in-flight op instead of abandoning it.

use super::ops::{self, SharedFd};
pub use crate::config::ftp::ZeroCopy;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

/// A pipe used as the in-kernel buffer of splice transfers.
#[derive(Debug)]
pub struct Pipe {
    read: SharedFd,
    write: SharedFd,
    capacity: usize,
    /// Held while this pipe counts as one of its pool's large pipes.
    _large: Option<LargeSlot>,
}

/// One of a pool's large pipes; gives its place back when the pipe is closed.
#[derive(Debug)]
struct LargeSlot(Rc<Cell<usize>>);

impl Drop for LargeSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// A worker's bounded pool of pipes: at most `max_idle` are kept between transfers; a
/// pipe that may hold stray bytes after an error is closed, never reused.
#[derive(Debug)]
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    max_idle: usize,
    pipe_size: usize,
    /// At most this many pipes of `pipe_size` are open at once; more get `crowded_size`.
    large_budget: usize,
    crowded_size: usize,
    /// Pipes of `pipe_size` open now (idle or in use).
    large_open: Rc<Cell<usize>>,
}

impl PipePool {
    /// A pool keeping up to `max_idle` pipes of `pipe_size` bytes.
    pub fn new(max_idle: usize, pipe_size: usize) -> PipePool {
        PipePool {
            idle: RefCell::new(Vec::new()),
            max_idle,
            pipe_size,
            large_budget: usize::MAX,
            crowded_size: pipe_size,
            large_open: Rc::new(Cell::new(0)),
        }
    }

    /// Opens at most `large_budget` pipes of the full size at once, and pipes of
    /// `crowded_size` beyond that. A large pipe moves a single transfer much faster (fewer
    /// splices, each a hop to an io-wq thread), but the kernel caps a user's pipe pages
    /// (pipe-user-pages-soft, 64 MiB), so many concurrent transfers share smaller ones.
    pub fn with_crowding(mut self, large_budget: usize, crowded_size: usize) -> PipePool {
        self.large_budget = large_budget;
        self.crowded_size = crowded_size;
        self
    }

    /// Takes an idle pipe or makes a new one.
    pub fn take(&self) -> io::Result<Pipe> {
        if let Some(p) = self.idle.borrow_mut().pop() {
            return Ok(p);
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        let large = self.large_open.get() < self.large_budget;
        let want = if large { self.pipe_size } else { self.crowded_size };
        // Bigger pipes mean fewer splices per MiB; the kernel may refuse (per-user pipe page
        // limits), and then the default 64 KiB still works.
        let capacity = nix::fcntl::fcntl(write.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(want as i32))
            .map(|n| n as usize)
            .unwrap_or(64 * 1024);
        let slot = (large && capacity >= self.pipe_size).then(|| {
            self.large_open.set(self.large_open.get() + 1);
            LargeSlot(Rc::clone(&self.large_open))
        });
        Ok(Pipe { read: Rc::new(read), write: Rc::new(write), capacity, _large: slot })
    }

    /// Returns a pipe known to be empty.
    fn give_back(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(pipe);
        }
    }

    /// Pipes currently idle in the pool.
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }
}

/// Limits for one transfer.
#[derive(Debug, Clone, Copy)]
pub struct TransferLimits {
    /// Give up when the peer makes no progress for this long.
    pub stall_timeout: Duration,
    /// Bytes per second, 0 = unlimited.
    pub rate_bps: u64,
}

/// Cancels a running transfer from another task (ABOR, shutdown).
#[derive(Debug, Clone, Default)]
pub struct AbortHandle {
    inner: Rc<RefCell<AbortState>>,
}

#[derive(Debug, Default)]
struct AbortState {
    aborted: bool,
    socket: Option<SharedFd>,
}

impl AbortHandle {
    /// Aborts: marks the transfer and shuts its socket down so pending ops complete now.
    pub fn abort(&self) {
        let mut st = self.inner.borrow_mut();
        st.aborted = true;
        if let Some(sock) = &st.socket {
            let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
    }

    /// True once aborted.
    pub fn is_aborted(&self) -> bool {
        self.inner.borrow().aborted
    }

    fn attach(&self, sock: &SharedFd) {
        self.inner.borrow_mut().socket = Some(Rc::clone(sock));
    }
}

/// The error of a transfer ended by ABOR or the drain timeout.
pub(crate) fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "transfer aborted")
}

/// Waits for readiness, but at most `timeout`: on expiry the socket is shut down so the
/// pending poll completes, and the op is awaited to the end (never dropped in flight).
async fn wait_ready(sock: &SharedFd, events: i16, timeout: Duration) -> io::Result<()> {
    let op = ops::poll(sock, events);
    tokio::pin!(op);
    tokio::select! {
        res = &mut op => res.map(|_| ()),
        _ = tokio::time::sleep(timeout) => {
            let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
            let _ = op.await;
            Err(io::Error::new(io::ErrorKind::TimedOut, "data connection stalled"))
        }
    }
}

/// Paces a transfer to its connection's rate (token bucket refilled by elapsed time) and
/// counts what it moved into [`DataConn::moved`], so a failed transfer still reports it.
pub struct Pacer<'a> {
    rate_bps: u64,
    started: tokio::time::Instant,
    sent: u64,
    moved: &'a Cell<u64>,
}

impl<'a> Pacer<'a> {
    /// A pacer for one transfer on `conn`.
    pub fn new(conn: &'a DataConn<'_>) -> Pacer<'a> {
        Pacer {
            rate_bps: conn.limits.rate_bps,
            started: tokio::time::Instant::now(),
            sent: 0,
            moved: &conn.moved,
        }
    }

    /// Largest chunk to move next (about 1/10 s worth when limited).
    fn chunk(&self, max: usize) -> usize {
        if self.rate_bps == 0 {
            max
        } else {
            max.min((self.rate_bps / 10).max(1024) as usize)
        }
    }

    /// Counts `n` bytes moved and sleeps until they are due.
    pub async fn account(&mut self, n: u64) {
        self.sent += n;
        self.moved.set(self.moved.get() + n);
        if self.rate_bps == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate_bps as f64);
        tokio::time::sleep_until(self.started + due).await;
    }
}

/// One data connection and what governs transfers on it.
pub struct DataConn<'a> {
    /// The connected, non-blocking data socket.
    pub sock: &'a SharedFd,
    /// The worker's pipe pool.
    pub pipes: &'a PipePool,
    /// Stall timeout and rate.
    pub limits: TransferLimits,
    /// Cancels the transfer from the control side.
    pub abort: &'a AbortHandle,
    /// Bytes moved so far (what the transfer returns on success), kept when it fails: the
    /// xferlog and the byte counters report what an aborted transfer did move. Shared, so the
    /// live session view reads the same counter.
    pub moved: Rc<Cell<u64>>,
}

impl<'a> DataConn<'a> {
    /// A connection that has moved nothing yet.
    pub fn new(
        sock: &'a SharedFd,
        pipes: &'a PipePool,
        limits: TransferLimits,
        abort: &'a AbortHandle,
    ) -> Self {
        DataConn { sock, pipes, limits, abort, moved: Rc::default() }
    }
}

/// The error of a file that ended before the length its transfer was opened with.
pub fn file_shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the file became shorter during the transfer")
}

/// Sends exactly `len` bytes of `file` from `offset` over `conn`: the length the file had
/// when the transfer opened it. A file that grows meanwhile is sent as it was (the bytes
/// past `len` were not there when the transfer began); one that ends early fails with
/// [`file_shrank`], so a short copy is never reported as a whole one. Returns `len`.
pub async fn send_file(
    conn: &DataConn<'_>,
    mode: ZeroCopy,
    file: &SharedFd,
    offset: u64,
    len: u64,
) -> io::Result<u64> {
    conn.abort.attach(conn.sock);
    match mode {
        ZeroCopy::Splice => splice_file(conn, file, offset, len).await,
        ZeroCopy::Sendfile => sendfile_file(conn, file, offset, len).await,
    }
}

async fn splice_file(conn: &DataConn<'_>, file: &SharedFd, offset: u64, len: u64) -> io::Result<u64> {
    let DataConn { sock, pipes, limits, abort, .. } = *conn;
    let pipe = pipes.take()?;
    let mut pacer = Pacer::new(conn);
    let mut pos = offset;
    let end = offset + len;
    loop {
        if abort.is_aborted() {
            return Err(aborted()); // the pipe is dropped: it may hold bytes
        }
        let want = (end - pos).min(pacer.chunk(pipe.capacity) as u64) as u32;
        if want == 0 {
            break;
        }
        // File -> pipe: runs on an io-wq thread; 0 means end of file, here before `end`.
        let filled = ops::splice(file, Some(pos), &pipe.write, None, want).await?;
        if filled == 0 {
            pipes.give_back(pipe); // empty: all it took went on to the socket
            return Err(file_shrank());
        }
        let mut left = filled;
        while left > 0 {
            match ops::splice(&pipe.read, None, sock, None, left).await {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => left -= n,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    wait_ready(sock, libc::POLLOUT, limits.stall_timeout).await?;
                }
                Err(e) if abort.is_aborted() => return Err(io::Error::new(io::ErrorKind::Interrupted, e)),
                Err(e) => return Err(e),
            }
        }
        pos += u64::from(filled);
        pacer.account(u64::from(filled)).await;
    }
    pipes.give_back(pipe);
    Ok(pos - offset)
}

async fn sendfile_file(conn: &DataConn<'_>, file: &SharedFd, offset: u64, len: u64) -> io::Result<u64> {
    let DataConn { sock, limits, abort, .. } = *conn;
    // Most a call may send before the task yields to the worker's other sessions. The call
    // stops anyway when the socket buffer is full; only a client that drains as fast as the
    // kernel sends (loopback) keeps it going: 16 MiB is then about 3 ms at 5 GB/s, and
    // measured 2-3% faster than 4 MiB (fewer calls, each ending in a push).
    const CHUNK: usize = 16 << 20;
    let mut pacer = Pacer::new(conn);
    let mut pos = offset as i64;
    let end = offset + len;
    loop {
        if abort.is_aborted() {
            return Err(aborted());
        }
        let want = (end - pos as u64).min(pacer.chunk(CHUNK) as u64) as usize;
        if want == 0 {
            break;
        }
        let borrowed_sock = sock.as_ref();
        let borrowed_file = file.as_ref();
        match nix::sys::sendfile::sendfile64(borrowed_sock, borrowed_file, Some(&mut pos), want) {
            // End of file before `end` (a full socket is EAGAIN, never 0).
            Ok(0) => return Err(file_shrank()),
            Ok(n) => pacer.account(n as u64).await,
            Err(nix::errno::Errno::EAGAIN) => wait_ready(sock, libc::POLLOUT, limits.stall_timeout).await?,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) if abort.is_aborted() => return Err(io::Error::new(io::ErrorKind::Interrupted, e)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pos as u64 - offset)
}

/// Receives from `conn` until end of stream into `file` at `offset` (socket -> pipe ->
/// file splice). Returns the bytes written; they are in the page cache when it returns.
pub async fn recv_file(
    conn: &DataConn<'_>,
    file: &SharedFd,
    offset: u64,
    max_bytes: Option<u64>,
) -> io::Result<u64> {
    let DataConn { sock, pipes, limits, abort, .. } = *conn;
    abort.attach(sock);
    let pipe = pipes.take()?;
    let mut pacer = Pacer::new(conn);
    let mut pos = offset;
    loop {
        if abort.is_aborted() {
            return Err(aborted());
        }
        let got = match ops::splice(sock, None, &pipe.write, None, pacer.chunk(pipe.capacity) as u32).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                wait_ready(sock, libc::POLLIN, limits.stall_timeout).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if max_bytes.is_some_and(|m| pos - offset + u64::from(got) > m) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "upload exceeds the allowed size"));
        }
        let mut left = got;
        while left > 0 {
            let n = ops::splice(&pipe.read, None, file, Some(pos), left).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            left -= n;
            pos += u64::from(n);
        }
        pacer.account(u64::from(got)).await;
    }
    pipes.give_back(pipe);
    Ok(pos - offset)
}

/// Makes an fd shareable with in-flight ops.
pub fn shared(fd: OwnedFd) -> SharedFd {
    Rc::new(fd)
}

#[cfg(test)]
mod tests;
