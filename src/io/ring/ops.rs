//! Custom io_uring operations submitted through tokio-uring's oneshot API: splice, poll,
//! accept, connect, send and recv on fds we own. Every op keeps the fds and buffers it
//! points at alive until its completion arrives, whatever happens to the future.

use io_uring::{opcode, squeue, types};
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// Shared ownership of an fd, so an in-flight op can hold it open.
pub type SharedFd = Rc<OwnedFd>;

/// Hands the completion result back together with the data the op kept alive.
struct KeepData<D>(PhantomData<D>);

impl<D> OneshotOutputTransform for KeepData<D> {
    type Output = (io::Result<u32>, D);
    type StoredData = D;
    fn transform_oneshot_output(self, data: D, cqe: io_uring::cqueue::Entry) -> Self::Output {
        let r = cqe.result();
        let res = if r < 0 { Err(io::Error::from_raw_os_error(-r)) } else { Ok(r as u32) };
        (res, data)
    }
}

/// Submits `sqe`, keeping `data` alive until the completion.
///
/// # Safety
/// Every pointer and fd in `sqe` must point into `data` (heap-stable) or be otherwise
/// valid until the operation completes.
async unsafe fn submit<D: Unpin + 'static>(data: D, sqe: squeue::Entry) -> (io::Result<u32>, D) {
    UnsubmittedOneshot::new(data, KeepData(PhantomData), sqe).submit().await
}

/// The fd of a tokio-uring TCP stream, borrowed for as long as the stream (tokio-uring
/// offers only `AsRawFd`), for socket options through `socket2::SockRef`.
pub fn stream_fd(stream: &tokio_uring::net::TcpStream) -> BorrowedFd<'_> {
    // SAFETY: the stream owns its fd until it is dropped or closed, which needs it back by
    // value, so the fd stays open for the borrow's lifetime.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }
}

fn fd(f: &SharedFd) -> types::Fd {
    types::Fd(f.as_raw_fd())
}

/// A file position the kernel takes literally: above `i64::MAX` it would be a negative
/// `off_t`, and -1 means "the current position" to io_uring and splice, so a write meant for
/// one place would land at another. Such positions fail with EOVERFLOW before any SQE.
fn file_offset(offset: u64) -> io::Result<u64> {
    if offset > i64::MAX as u64 {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    Ok(offset)
}

/// splice(2) between two fds; `None` offsets mean "current position / a pipe".
pub async fn splice(
    input: &SharedFd,
    off_in: Option<u64>,
    output: &SharedFd,
    off_out: Option<u64>,
    len: u32,
) -> io::Result<u32> {
    let off = |o: Option<u64>| o.map(|v| file_offset(v).map(|v| v as i64)).unwrap_or(Ok(-1));
    let sqe = opcode::Splice::new(fd(input), off(off_in)?, fd(output), off(off_out)?, len)
        .flags(libc::SPLICE_F_MOVE)
        .build();
    // SAFETY: the op references only the two fds, both kept open by the Rc clones in data.
    unsafe { submit((Rc::clone(input), Rc::clone(output)), sqe).await.0 }
}

/// Waits until `f` is ready for `events` (POLLIN/POLLOUT); returns the revents.
pub async fn poll(f: &SharedFd, events: i16) -> io::Result<u32> {
    poll_owned(Rc::clone(f), f.as_raw_fd(), events).await
}

/// As [`poll`] for an fd owned by something else: `owner` keeps `raw` open until the
/// completion (e.g. an `Rc` of a tokio-uring stream).
pub async fn poll_owned<D: Unpin + 'static>(
    owner: D,
    raw: std::os::fd::RawFd,
    events: i16,
) -> io::Result<u32> {
    let sqe = opcode::PollAdd::new(types::Fd(raw), events as u16 as u32).build();
    // SAFETY: only the fd is referenced, and `owner` (the op's data) keeps it open.
    unsafe { submit(owner, sqe).await.0 }
}

/// Accepts one connection on a listening socket (non-blocking, close-on-exec).
pub async fn accept(listener: &SharedFd) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut addr: Box<(libc::sockaddr_storage, libc::socklen_t)> = Box::new((
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        unsafe { std::mem::zeroed() },
        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    ));
    let sqe = opcode::Accept::new(fd(listener), &mut addr.0 as *mut _ as *mut libc::sockaddr, &mut addr.1)
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build();
    // SAFETY: the address buffers live in the boxed data, the fd in the Rc clone.
    let (res, (_, addr)) = unsafe { submit((Rc::clone(listener), addr), sqe).await };
    // SAFETY: a successful accept returns a new fd that we now own.
    let conn = unsafe { OwnedFd::from_raw_fd(res? as i32) };
    // SAFETY: the kernel wrote a valid address of length addr.1 into addr.0.
    let peer = unsafe { socket2::SockAddr::new(addr.0, addr.1) };
    let peer = peer.as_socket().ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    Ok((conn, peer))
}

/// Connects a socket we created (e.g. one bound to port 20 by the binder).
pub async fn connect(sock: &SharedFd, to: SocketAddr) -> io::Result<()> {
    let addr = Box::new(socket2::SockAddr::from(to));
    let sqe = opcode::Connect::new(fd(sock), addr.as_ptr(), addr.len()).build();
    // SAFETY: the address lives in the boxed data, the fd in the Rc clone.
    unsafe { submit((Rc::clone(sock), addr), sqe).await.0.map(|_| ()) }
}

/// send(2) of `buf[from..]` with MSG_NOSIGNAL; returns the bytes sent and the buffer.
pub async fn send(sock: &SharedFd, buf: Vec<u8>, from: usize) -> (io::Result<u32>, Vec<u8>) {
    let rest = buf.get(from..).unwrap_or(&[]);
    let sqe = opcode::Send::new(fd(sock), rest.as_ptr(), rest.len() as u32).flags(libc::MSG_NOSIGNAL).build();
    // SAFETY: the buffer is owned by data and not touched until completion.
    let (res, (_, buf)) = unsafe { submit((Rc::clone(sock), buf), sqe).await };
    (res, buf)
}

/// recv(2) into the spare capacity of `buf` (its length is reset to what was read).
pub async fn recv(sock: &SharedFd, mut buf: Vec<u8>) -> (io::Result<u32>, Vec<u8>) {
    buf.clear();
    let sqe = opcode::Recv::new(fd(sock), buf.as_mut_ptr(), buf.capacity() as u32).build();
    // SAFETY: the buffer is owned by data and not touched until completion.
    let (res, (_, mut buf)) = unsafe { submit((Rc::clone(sock), buf), sqe).await };
    if let Ok(n) = res {
        // SAFETY: the kernel initialised the first n bytes of the capacity.
        unsafe { buf.set_len(n as usize) };
    }
    (res, buf)
}

/// pread into the spare capacity of `buf` at `offset` (length reset to what was read).
pub async fn read_at(file: &SharedFd, mut buf: Vec<u8>, offset: u64) -> (io::Result<u32>, Vec<u8>) {
    buf.clear();
    let offset = match file_offset(offset) {
        Ok(o) => o,
        Err(e) => return (Err(e), buf),
    };
    let sqe = opcode::Read::new(fd(file), buf.as_mut_ptr(), buf.capacity() as u32).offset(offset).build();
    // SAFETY: the buffer is owned by data and not touched until completion.
    let (res, (_, mut buf)) = unsafe { submit((Rc::clone(file), buf), sqe).await };
    if let Ok(n) = res {
        // SAFETY: the kernel initialised the first n bytes of the capacity.
        unsafe { buf.set_len(n as usize) };
    }
    (res, buf)
}

/// pwrite of `buf` at `offset`.
pub async fn write_at(file: &SharedFd, buf: Vec<u8>, offset: u64) -> (io::Result<u32>, Vec<u8>) {
    let offset = match file_offset(offset) {
        Ok(o) => o,
        Err(e) => return (Err(e), buf),
    };
    let sqe = opcode::Write::new(fd(file), buf.as_ptr(), buf.len() as u32).offset(offset).build();
    // SAFETY: the buffer is owned by data and not touched until completion.
    let (res, (_, buf)) = unsafe { submit((Rc::clone(file), buf), sqe).await };
    (res, buf)
}

/// What a slot read keeps alive: the file, the buffers and the iovec array.
pub type SlotsData = (SharedFd, Vec<Vec<u8>>, Box<[libc::iovec]>);

/// Completes a slot read: each buffer's length becomes `at` plus what landed in its slot.
pub struct SlotsTransform {
    at: usize,
    lens: Vec<usize>,
}

impl OneshotOutputTransform for SlotsTransform {
    type Output = (io::Result<u32>, Vec<Vec<u8>>);
    type StoredData = SlotsData;
    fn transform_oneshot_output(self, data: SlotsData, cqe: io_uring::cqueue::Entry) -> Self::Output {
        let (_, mut bufs, _) = data;
        let r = cqe.result();
        let mut left = usize::try_from(r).unwrap_or(0);
        for (buf, &len) in bufs.iter_mut().zip(&self.lens) {
            let got = len.min(left);
            left -= got;
            if buf.len() == self.at && self.at + got <= buf.capacity() {
                // SAFETY: the kernel initialised `got` bytes of this buffer's slot, which
                // starts at `at` (its length when the read was submitted).
                unsafe { buf.set_len(self.at + got) };
            }
        }
        let res = if r < 0 { Err(io::Error::from_raw_os_error(-r)) } else { Ok(r as u32) };
        (res, bufs)
    }
}

/// A slot read in flight (see [`read_into_slots_op`]); dropping it leaves the read running
/// with its buffers kept alive until it completes.
pub type SlotsRead = tokio_uring::InFlightOneshot<SlotsData, SlotsTransform>;

/// preadv at `offset` into `bufs[i][at..at + lens[i]]` for each i, submitted at once: one
/// SQE fills the payload slots of a whole window behind their headers. Each buffer's
/// length must be `at` and its capacity hold its slot (else that slot gets no bytes); on
/// completion each length is `at` plus the bytes read into its slot (no zeroing first).
pub fn read_into_slots_op(
    file: &SharedFd,
    mut bufs: Vec<Vec<u8>>,
    at: usize,
    lens: &[usize],
    offset: u64,
) -> SlotsRead {
    let mut iov = slot_iovecs(&mut bufs, at, lens);
    // A slot the kernel was not given must not count bytes: read no further than the first.
    let usable = iov.iter().zip(lens).take_while(|(v, &l)| v.iov_len == l).count();
    iov.truncate(usable.max(1).min(iov.len()));
    let lens = lens.iter().take(iov.len()).copied().collect();
    let iov = iov.into_boxed_slice();
    let sqe = opcode::Readv::new(fd(file), iov.as_ptr(), iov.len() as u32).offset(offset).build();
    // SAFETY: the iovecs point into the Vecs' spare heap capacity and the iovec array is
    // boxed; all are owned by the op's data and not touched until completion.
    UnsubmittedOneshot::new((Rc::clone(file), bufs, iov), SlotsTransform { at, lens }, sqe).submit()
}

/// One iovec per buffer over its spare capacity after `at`, at most `lens[i]` long (shorter
/// when the capacity is; empty when the buffer's length is not `at`).
fn slot_iovecs(bufs: &mut [Vec<u8>], at: usize, lens: &[usize]) -> Vec<libc::iovec> {
    bufs.iter_mut()
        .zip(lens)
        .map(|(buf, &len)| {
            let room = if buf.len() == at { buf.capacity().saturating_sub(at).min(len) } else { 0 };
            libc::iovec { iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(), iov_len: room }
        })
        .collect()
}

/// As [`read_into_slots_op`], but made on the spot with `preadv2(RWF_NOWAIT)`, which reads
/// only what the page cache already holds: true when every slot was filled, so nothing
/// waited on the disk and no ring round trip was spent. On false the buffers are as they
/// were (length `at`), for the ring read that may wait.
pub fn try_read_cached_into_slots(
    file: &SharedFd,
    bufs: &mut [Vec<u8>],
    at: usize,
    lens: &[usize],
    offset: u64,
) -> bool {
    let iov = slot_iovecs(bufs, at, lens);
    if iov.len() != lens.len() || iov.iter().zip(lens).any(|(v, &len)| v.iov_len != len) {
        return false;
    }
    let total: usize = lens.iter().sum();
    let Ok(off) = libc::off_t::try_from(offset) else { return false };
    // SAFETY: each iovec covers spare capacity of a distinct buffer, alive for the call.
    let r = unsafe { libc::preadv2(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, off, libc::RWF_NOWAIT) };
    if usize::try_from(r).ok() != Some(total) {
        return false;
    }
    for (buf, &len) in bufs.iter_mut().zip(lens) {
        // SAFETY: the kernel initialised all `len` bytes of this buffer's slot.
        unsafe { buf.set_len(at + len) };
    }
    true
}

/// As [`read_into_slots_op`], awaited; returns the total bytes read.
pub async fn read_into_slots(
    file: &SharedFd,
    bufs: Vec<Vec<u8>>,
    at: usize,
    lens: &[usize],
    offset: u64,
) -> (io::Result<u32>, Vec<Vec<u8>>) {
    read_into_slots_op(file, bufs, at, lens, offset).await
}

/// pwrite of `buf[range]` at `offset` (short writes are the caller's to continue).
pub async fn write_range_at(
    file: &SharedFd,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    offset: u64,
) -> (io::Result<u32>, Vec<u8>) {
    let offset = match file_offset(offset) {
        Ok(o) => o,
        Err(e) => return (Err(e), buf),
    };
    let slice = buf.get(range).unwrap_or(&[]);
    let sqe = opcode::Write::new(fd(file), slice.as_ptr(), slice.len() as u32).offset(offset).build();
    // SAFETY: the slice lies in the buffer's heap memory, owned by data until completion.
    let (res, (_, buf)) = unsafe { submit((Rc::clone(file), buf), sqe).await };
    (res, buf)
}

/// pwrite of all of `buf[range]` at `offset`, continuing after short writes; the buffer
/// comes back either way so the caller can reuse it.
pub async fn write_all_at(
    file: &SharedFd,
    mut buf: Vec<u8>,
    range: std::ops::Range<usize>,
    offset: u64,
) -> (io::Result<()>, Vec<u8>) {
    let mut done = 0usize;
    while range.start + done < range.end {
        let (res, b) = write_range_at(file, buf, range.start + done..range.end, offset + done as u64).await;
        buf = b;
        match res {
            Ok(0) => return (Err(io::Error::from(io::ErrorKind::WriteZero)), buf),
            Ok(n) => done += n as usize,
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// fdatasync(2) through the ring, so flushing an upload does not block the worker thread.
pub async fn fdatasync(file: &SharedFd) -> io::Result<()> {
    let sqe = opcode::Fsync::new(fd(file)).flags(types::FsyncFlags::DATASYNC).build();
    // SAFETY: only the fd is referenced, kept open by data.
    unsafe { submit(Rc::clone(file), sqe).await.0.map(|_| ()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached_file(bytes: &[u8]) -> SharedFd {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        Rc::new(OwnedFd::from(f))
    }

    fn slots(n: usize, at: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| vec![0xAA; at])
            .map(|mut b| {
                b.reserve(64);
                b
            })
            .collect()
    }

    #[test]
    fn a_cached_read_fills_every_slot_behind_its_header() {
        let content: Vec<u8> = (0..100u8).collect();
        let file = cached_file(&content);
        let mut bufs = slots(3, 4);
        assert!(try_read_cached_into_slots(&file, &mut bufs, 4, &[10, 10, 5], 20));
        assert_eq!(&bufs[0][4..], &content[20..30]);
        assert_eq!(&bufs[1][4..], &content[30..40]);
        assert_eq!(&bufs[2][4..], &content[40..45]);
        assert_eq!(&bufs[0][..4], &[0xAA; 4], "the header is left alone");
    }

    #[test]
    fn a_short_or_impossible_read_leaves_the_buffers_for_the_ring() {
        let file = cached_file(&[1u8; 30]);
        let mut bufs = slots(2, 4);
        assert!(!try_read_cached_into_slots(&file, &mut bufs, 4, &[20, 20], 0), "only 30 bytes exist");
        assert!(bufs.iter().all(|b| b.len() == 4), "lengths unchanged after a short read");
        let mut small = vec![Vec::with_capacity(8)];
        small[0].resize(4, 0);
        assert!(!try_read_cached_into_slots(&file, &mut small, 4, &[20], 0), "a slot without room");
    }
}

/// A socket registered with the runtime's reactor (tokio's epoll, which the worker thread
/// waits in besides the ring): readiness wakes its task directly, with no ring op per datagram.
#[derive(Debug)]
pub struct Watched(SharedFd);

impl Watched {
    /// The socket.
    pub fn sock(&self) -> &SharedFd {
        &self.0
    }
}

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers `sock` with the reactor for readability.
pub fn watch(sock: SharedFd) -> io::Result<tokio::io::unix::AsyncFd<Watched>> {
    // SAFETY: `Watched` owns an `Rc` of the `OwnedFd`, so the fd stays open and names the
    // same socket for the whole registration, and `as_raw_fd` always returns that fd.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(Watched(sock), tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
