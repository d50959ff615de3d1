//! UDP recvmsg/sendmsg as custom io_uring ops: receive with the source and the destination
//! address (IP_PKTINFO / IPV6_PKTINFO), send from a chosen local address and, with UDP GSO
//! (`UDP_SEGMENT`), many equal-sized datagrams in one call. Unlike tokio-uring's `recv_from`,
//! a receive woken by `shutdown(2)` (no source address) is a normal result, not a panic.

use super::ops::SharedFd;
use io_uring::{opcode, squeue, types};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use tokio_uring::{InFlightOneshot, OneshotOutputTransform, UnsubmittedOneshot};

/// Room for one pktinfo cmsg of either family, or one UDP_SEGMENT cmsg plus a pktinfo.
const CMSG_SPACE: usize = 128;

/// Ancillary data buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_SPACE]);

/// A received datagram's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Payload bytes now at the start of the buffer.
    pub len: usize,
    /// The sender; `None` when the receive was ended by `shutdown(2)` rather than a datagram.
    pub from: Option<SocketAddr>,
    /// The address the datagram was sent to, and the interface it came in on.
    pub local: Option<(IpAddr, u32)>,
    /// The datagram was longer than the buffer and was cut (MSG_TRUNC).
    pub truncated: bool,
    /// Sent to a broadcast or multicast address: every socket on the port (each
    /// `SO_REUSEPORT` member) received its own copy.
    pub broadcast: bool,
}

/// Kernel-visible state of a recvmsg; boxed so its address is stable while the op runs.
struct RecvState {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    cmsg: CmsgBuf,
}

/// What a receive keeps alive until its completion.
pub struct RecvData {
    _sock: SharedFd,
    state: Box<RecvState>,
    buf: Vec<u8>,
}

/// Turns a recvmsg completion into [`Received`] plus the buffer.
pub struct RecvTransform;

impl OneshotOutputTransform for RecvTransform {
    type Output = (io::Result<Received>, Vec<u8>);
    type StoredData = RecvData;
    fn transform_oneshot_output(self, data: RecvData, cqe: io_uring::cqueue::Entry) -> Self::Output {
        let RecvData { state, buf, .. } = data;
        state.finish(cqe.result(), buf)
    }
}

impl RecvState {
    /// A zeroed header pointing at `buf`'s capacity and at this state's own buffers; boxed
    /// so those self-references stay valid.
    fn new(buf: &mut Vec<u8>) -> Box<RecvState> {
        buf.clear();
        // SAFETY: msghdr, iovec, sockaddr_storage and the cmsg buffer are plain old data; all
        // zero is a valid initial value for each.
        let mut state: Box<RecvState> = Box::new(unsafe { zeroed() });
        state.iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.capacity() };
        state.hdr.msg_name = (&mut state.addr as *mut libc::sockaddr_storage).cast();
        state.hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        state.hdr.msg_iov = &mut state.iov;
        state.hdr.msg_iovlen = 1;
        state.hdr.msg_control = state.cmsg.0.as_mut_ptr().cast();
        state.hdr.msg_controllen = CMSG_SPACE;
        state
    }

    /// Reads a finished recvmsg (`r` is its result or -errno) into [`Received`].
    fn finish(&self, r: i32, mut buf: Vec<u8>) -> (io::Result<Received>, Vec<u8>) {
        if r < 0 {
            return (Err(io::Error::from_raw_os_error(-r)), buf);
        }
        let len = (r as usize).min(buf.capacity());
        // SAFETY: the kernel initialised the first `len` bytes of the capacity.
        unsafe { buf.set_len(len) };
        let from = if self.hdr.msg_namelen == 0 {
            None
        } else {
            // SAFETY: the kernel wrote a valid address of msg_namelen bytes into `addr`.
            unsafe { socket2::SockAddr::new(self.addr, self.hdr.msg_namelen) }.as_socket()
        };
        let (local, broadcast) = parse_pktinfo(&self.hdr);
        let truncated = self.hdr.msg_flags & libc::MSG_TRUNC != 0;
        (Ok(Received { len, from, local, truncated, broadcast }), buf)
    }
}

/// A recvmsg that does not wait: `Ok(None)` when nothing is queued. Used to drain a burst
/// of requests after one io_uring receive completed, without a ring round trip each.
pub fn try_recv_msg(sock: &SharedFd, mut buf: Vec<u8>) -> (io::Result<Option<Received>>, Vec<u8>) {
    let mut state = RecvState::new(&mut buf);
    // SAFETY: the header points into `state` and `buf`, both alive for the call.
    let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut state.hdr, libc::MSG_DONTWAIT) };
    let r = if r < 0 { -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) } else { r as i32 };
    if r == -libc::EAGAIN {
        return (Ok(None), buf);
    }
    let (res, buf) = state.finish(r, buf);
    (res.map(Some), buf)
}

/// An in-flight receive; poll it to completion (dropping it leaves the op running).
pub type RecvOp = InFlightOneshot<RecvData, RecvTransform>;

/// Submits a recvmsg into the capacity of `buf` (its length is reset to what arrived).
///
/// The SQE is queued at once; the returned future can be kept across `select!` rounds.
pub fn recv_msg(sock: &SharedFd, mut buf: Vec<u8>) -> RecvOp {
    let mut state = RecvState::new(&mut buf);
    let sqe = opcode::RecvMsg::new(types::Fd(sock.as_raw_fd()), &mut state.hdr).build();
    let data = RecvData { _sock: Rc::clone(sock), state, buf };
    // Sound: every pointer in the SQE points into the boxed state or the Vec's heap
    // buffer, both owned by `data`, which tokio-uring keeps alive until the completion even
    // when the future is dropped; the fd is held open by the Rc clone.
    UnsubmittedOneshot::new(data, RecvTransform, sqe).submit()
}

/// Reads the destination address out of an IP_PKTINFO or IPV6_PKTINFO cmsg, and whether
/// the header destination was a broadcast or multicast address rather than this host's own.
fn parse_pktinfo(hdr: &libc::msghdr) -> (Option<(IpAddr, u32)>, bool) {
    let (mut v4, mut v6) = (None, None);
    let (mut v4_broadcast, mut v6_multicast) = (false, false);
    // SAFETY: hdr.msg_control/msg_controllen describe the buffer the kernel filled; the
    // CMSG_* macros stay inside it and each payload is read unaligned at its own size.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    v6 = Some((IpAddr::V6(ip), info.ipi6_ifindex));
                    v6_multicast = ip.is_multicast();
                }
                // `ipi_spec_dst`, not `ipi_addr`: for a request sent to a broadcast address
                // (PXE clients do) the header destination is that broadcast address, while
                // spec_dst is this host's address to answer from (ip(7)).
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                    let ip = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                    v4 = Some((IpAddr::V4(ip), info.ipi_ifindex as u32));
                    // The two differ only for a broadcast or multicast destination. A zero
                    // `ipi_spec_dst` (no route on the packet) says nothing: then every copy
                    // is answered rather than risk leaving a unicast request unanswered.
                    v4_broadcast =
                        info.ipi_spec_dst.s_addr != 0 && info.ipi_addr.s_addr != info.ipi_spec_dst.s_addr;
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    // An IPv4 datagram on a dual-stack socket brings both; the IPv6 one then only holds
    // the mapped header destination (possibly a broadcast address), so IPv4 wins.
    match v4 {
        Some(_) => (v4, v4_broadcast),
        None => (v6, v6_multicast),
    }
}

/// One sendmsg to prepare: the iovecs point into buffers the caller keeps alive.
pub struct SendSpec {
    /// Destination.
    pub to: SocketAddr,
    /// Source address to send from (on a socket bound to a wildcard), via pktinfo.
    pub from: Option<IpAddr>,
    /// UDP GSO segment size: the kernel cuts the payload into datagrams of this size.
    pub segment: Option<u16>,
    /// Slices of the payload, concatenated in order.
    pub iov: Vec<libc::iovec>,
}

/// Kernel-visible state of a sendmsg; boxed so its address is stable while the op runs.
struct SendState {
    hdr: libc::msghdr,
    addr: socket2::SockAddr,
    iov: Vec<libc::iovec>,
    cmsg: CmsgBuf,
}

/// What a send keeps alive until its completion: the socket, the header and the buffers.
pub struct SendData<B> {
    _sock: SharedFd,
    _state: Box<SendState>,
    bufs: B,
}

/// Hands back the result and the buffers.
pub struct SendTransform<B>(std::marker::PhantomData<B>);

impl<B> OneshotOutputTransform for SendTransform<B> {
    type Output = (io::Result<u32>, B);
    type StoredData = SendData<B>;
    fn transform_oneshot_output(self, data: SendData<B>, cqe: io_uring::cqueue::Entry) -> Self::Output {
        let r = cqe.result();
        let res = if r < 0 { Err(io::Error::from_raw_os_error(-r)) } else { Ok(r as u32) };
        (res, data.bufs)
    }
}

/// An in-flight send.
pub type SendOp<B> = InFlightOneshot<SendData<B>, SendTransform<B>>;

impl SendState {
    /// A header for `spec`, boxed so its pointers into itself stay valid.
    fn new(spec: SendSpec) -> Box<SendState> {
        let SendSpec { to, from, segment, iov } = spec;
        let mut state = Box::new(SendState {
            // SAFETY: msghdr is plain old data; all zero is valid.
            hdr: unsafe { zeroed() },
            addr: socket2::SockAddr::from(to),
            iov,
            cmsg: CmsgBuf([0; CMSG_SPACE]),
        });
        state.hdr.msg_name = state.addr.as_ptr() as *mut libc::c_void;
        state.hdr.msg_namelen = state.addr.len();
        state.hdr.msg_iov = state.iov.as_mut_ptr();
        state.hdr.msg_iovlen = state.iov.len();
        let control = build_cmsgs(&mut state.cmsg, to, from, segment);
        if control > 0 {
            state.hdr.msg_control = state.cmsg.0.as_mut_ptr().cast();
            state.hdr.msg_controllen = control;
        }
        state
    }
}

/// A sendmsg that does not wait, made on the spot: `Ok(None)` when the socket's send
/// buffer is full. A UDP send completes inside the call, so sending directly saves the
/// ring round trip (submit, completion, task wake-up) that lock-step TFTP pays per block.
///
/// # Safety
/// Every iovec in `spec` must point into memory that is valid for the call.
pub unsafe fn try_send_msg(sock: &SharedFd, spec: SendSpec) -> io::Result<Option<u32>> {
    let state = SendState::new(spec);
    let r = libc::sendmsg(sock.as_raw_fd(), &state.hdr, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    if r >= 0 {
        return Ok(Some(r as u32));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        e => Err(e),
    }
}

/// Submits one sendmsg; with `link`, the next SQE waits for this one (IOSQE_IO_LINK), which
/// keeps the datagrams of a window in order even when one send has to wait for buffer room.
///
/// # Safety
/// Every iovec in `spec` must point into memory owned by `bufs` at a heap-stable address
/// (e.g. the heap buffers of `Vec`s inside an `Rc`), not changed until the op completes.
pub unsafe fn send_msg<B: Unpin + 'static>(
    sock: &SharedFd,
    spec: SendSpec,
    bufs: B,
    link: bool,
) -> SendOp<B> {
    let state = SendState::new(spec);
    let mut sqe: squeue::Entry = opcode::SendMsg::new(types::Fd(sock.as_raw_fd()), &state.hdr)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build();
    if link {
        sqe = sqe.flags(squeue::Flags::IO_LINK);
    }
    let data = SendData { _sock: Rc::clone(sock), _state: state, bufs };
    // Sound: the header, address, iovec array and cmsg live in the boxed state owned by
    // `data`; the iovecs point into `bufs` per this function's contract.
    UnsubmittedOneshot::new(data, SendTransform(std::marker::PhantomData), sqe).submit()
}

/// Writes the source-address and GSO cmsgs into `buf`; returns the control length used.
fn build_cmsgs(buf: &mut CmsgBuf, to: SocketAddr, from: Option<IpAddr>, segment: Option<u16>) -> usize {
    let mut used = 0usize;
    let mut push = |level: i32, ty: i32, payload: &[u8]| {
        // SAFETY: CMSG_SPACE of our largest payloads (in6_pktinfo 20 + u16) is far below
        // the buffer size, checked by the `get_mut` before writing; header and payload are
        // written unaligned-safe through the CMSG_* macros on an 8-aligned buffer.
        unsafe {
            let space = libc::CMSG_SPACE(payload.len() as u32) as usize;
            if buf.0.get_mut(used..used + space).is_none() {
                return;
            }
            let c = buf.0.as_mut_ptr().add(used) as *mut libc::cmsghdr;
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(payload.len() as u32) as usize;
            std::ptr::copy_nonoverlapping(payload.as_ptr(), libc::CMSG_DATA(c), payload.len());
            used += space;
        }
    };
    if let Some(src) = from {
        match (to, src) {
            (SocketAddr::V6(_), src) => {
                // A v6 socket takes IPV6_PKTINFO, with a v4-mapped source for IPv4 peers.
                let ip = match src {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                // SAFETY: plain old data; all zero is valid (ifindex 0 = let routing pick).
                let mut info: libc::in6_pktinfo = unsafe { zeroed() };
                info.ipi6_addr.s6_addr = ip.octets();
                push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&info));
            }
            (SocketAddr::V4(_), IpAddr::V4(src)) => {
                // SAFETY: plain old data; all zero is valid.
                let mut info: libc::in_pktinfo = unsafe { zeroed() };
                info.ipi_spec_dst.s_addr = u32::from(src).to_be();
                push(libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&info));
            }
            (SocketAddr::V4(_), IpAddr::V6(_)) => {}
        }
    }
    if let Some(seg) = segment {
        push(libc::SOL_UDP, libc::UDP_SEGMENT, &seg.to_ne_bytes());
    }
    used
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a plain-old-data libc struct without padding reads that matter; the
    // slice covers exactly its bytes and lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Sends one datagram `bytes` (copied into an owned buffer) to `to`, from `from` if given.
pub async fn send_one(
    sock: &SharedFd,
    to: SocketAddr,
    from: Option<IpAddr>,
    bytes: Vec<u8>,
) -> io::Result<u32> {
    let iov = vec![libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() }];
    let spec = SendSpec { to, from, segment: None, iov };
    // SAFETY: the iovec points into `bytes`' heap buffer, moved into the op's data.
    unsafe { send_msg(sock, spec, bytes, false) }.await.0
}

/// Scope id a link-local IPv6 local address needs to be bound (the arrival interface).
pub fn with_scope(ip: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, ifindex))
        }
        ip => SocketAddr::new(ip, port),
    }
}
