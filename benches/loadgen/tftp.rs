//! TFTP read-request clients (RFC 1350) with options blksize (2348), tsize and timeout
//! (2349) and windowsize (7440); block numbers wrap past 65535; optional client-side loss
//! drops a share of received DATA so the server's retransmission path is exercised.
//! Packets are encoded and parsed with Ferry's own wire types (`ferry::tftp::wire`); the
//! per-block path neither allocates nor copies (an ACK is an inline [`Datagram`], a DATA a
//! [`Repr`] borrowing the receive buffer). The self-test's mini server keeps a hand-written
//! codec of its own, so the two still check each other.

use crate::hash::Hasher;
use crate::report::{Failure, Stats};
use crate::run::Budget;
use ferry::tftp::options::{parse_decimal, MAX_BLKSIZE, MIN_BLKSIZE};
use ferry::tftp::wire::{Datagram, ErrorCode, OptionList, Repr, WireError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Settings shared by every TFTP task of a run.
#[derive(Clone)]
pub struct TftpCfg {
    pub addr: SocketAddr,
    /// Remote file name; `{n}` and `{t}` expand as for FTP.
    pub path: String,
    /// Requested block size; `None` asks for no option (512-byte blocks).
    pub blksize: Option<u16>,
    /// Requested window (RFC 7440); `None` asks for no option (lock-step).
    pub windowsize: Option<u16>,
    /// Ask for the transfer size (`tsize 0`) and check it against the expected length.
    pub tsize: bool,
    /// Ask the server to use this retransmission timeout (seconds, RFC 2349).
    pub timeout_opt: Option<u8>,
    /// How long the client waits before re-sending its last packet.
    pub retransmit: Duration,
    /// Re-sends before giving up on a transfer.
    pub retries: u32,
    /// Share of received DATA packets to drop, 0.0..1.0.
    pub loss: f64,
    /// Receive coalesced GSO sends whole (UDP_GRO) and split them here.
    pub gro: bool,
    pub expect_len: Option<u64>,
    pub expect_hash: Option<u64>,
    pub seed: u64,
}

fn malformed(e: WireError) -> Failure {
    Failure::Protocol(format!("malformed TFTP packet: {e}"))
}

/// The read request, octet mode, with the options `cfg` asks for.
fn request(cfg: &TftpCfg, path: &str) -> Result<Vec<u8>, Failure> {
    let asked = [
        ("blksize", cfg.blksize.map(|b| b.to_string())),
        ("windowsize", cfg.windowsize.map(|w| w.to_string())),
        ("tsize", cfg.tsize.then(|| "0".to_string())),
        ("timeout", cfg.timeout_opt.map(|t| t.to_string())),
    ];
    let mut options = OptionList::new();
    for (name, value) in &asked {
        if let Some(value) = value {
            options.push(name.as_bytes(), value.as_bytes()).map_err(malformed)?;
        }
    }
    let rrq = Repr::Rrq { filename: path.as_bytes(), mode: b"octet", options };
    let mut p = vec![0; rrq.buffer_len()];
    rrq.emit(&mut p).map_err(malformed)?;
    Ok(p)
}

/// Takes an OACK's granted values (RFC 2347): the block size and window in force, and the
/// transfer size checked against the expected length. Any other option is a failure.
fn apply_oack(
    options: &OptionList<'_>,
    cfg: &TftpCfg,
    blksize: &mut usize,
    window: &mut u64,
) -> Result<(), Failure> {
    for (name, value) in options.as_slice() {
        let (k, v) = (String::from_utf8_lossy(name).to_ascii_lowercase(), String::from_utf8_lossy(value));
        let num = parse_decimal(value).ok_or_else(|| Failure::Protocol(format!("OACK {k}={v}")))?;
        match k.as_str() {
            "blksize" if (u64::from(MIN_BLKSIZE)..=u64::from(MAX_BLKSIZE)).contains(&num) => {
                *blksize = num as usize
            }
            "windowsize" if (1..=65535).contains(&num) => *window = num,
            "tsize" => {
                if let Some(want) = cfg.expect_len {
                    if want != num {
                        return Err(Failure::Length { want, got: num });
                    }
                }
            }
            "timeout" => {}
            _ => return Err(Failure::Protocol(format!("OACK option {k}={v} not asked or out of range"))),
        }
    }
    Ok(())
}

/// Seeded xorshift for the loss simulation: reproducible and cheap per packet.
pub struct Lossy(pub u64);

impl Lossy {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Largest coalesced receive with UDP_GRO: one IP datagram's worth.
const GRO_SLOT: usize = 65_536;
/// Room for the UDP_GRO cmsg (an int) per message.
const CMSG_ROOM: usize = 32;

/// Received datagrams taken from the socket with one recvmmsg(2) per batch; with UDP_GRO a
/// message may hold several datagrams of `gso_size` bytes each, handed out one by one. The
/// per-call kernel structures are kept between calls, so a receive allocates nothing.
struct RecvBatch {
    slot: usize,
    data: Vec<u8>,
    /// 8-aligned ancillary buffers, one per slot (UDP_GRO only).
    cmsgs: Vec<u64>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// (start, length, sender) of each datagram of the batch not yet handed out.
    got: Vec<(usize, usize, SocketAddr)>,
    next: usize,
}

impl RecvBatch {
    fn new(slot: usize, slots: usize, gro: bool) -> RecvBatch {
        let (slot, slots) = if gro { (GRO_SLOT, 4) } else { (slot, slots) };
        let cmsgs = if gro { vec![0u64; slots * CMSG_ROOM / 8] } else { Vec::new() };
        RecvBatch {
            slot,
            data: vec![0; slot * slots],
            cmsgs,
            addrs: Vec::with_capacity(slots),
            iovs: Vec::with_capacity(slots),
            hdrs: Vec::with_capacity(slots),
            got: Vec::with_capacity(slots),
            next: 0,
        }
    }

    fn pop(&mut self) -> Option<(usize, usize, SocketAddr)> {
        let v = self.got.get(self.next).copied()?;
        self.next += 1;
        Some(v)
    }

    fn packet(&self, start: usize, n: usize) -> &[u8] {
        &self.data[start..start + n]
    }

    /// Receives what is queued (without waiting); WouldBlock when nothing is.
    ///
    /// A batch shorter than the slots emptied the socket: the socket's readiness is then
    /// cleared with the data in hand (tokio keeps an event that raced in), so a lock-step
    /// client's next wait costs no receive that would only find the socket empty.
    fn fill(&mut self, sock: &UdpSocket) -> std::io::Result<()> {
        self.got.clear();
        self.next = 0;
        let slots = self.data.len() / self.slot;
        let gro = !self.cmsgs.is_empty();
        // SAFETY: plain-old-data structures, all-zero is valid.
        self.addrs.resize(slots, unsafe { std::mem::zeroed() });
        self.iovs.clear();
        self.iovs.extend(
            self.data
                .chunks_mut(self.slot)
                .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: c.len() }),
        );
        let cmsg_base = self.cmsgs.as_mut_ptr().cast::<u8>();
        self.hdrs.clear();
        for (i, (iov, addr)) in self.iovs.iter_mut().zip(self.addrs.iter_mut()).enumerate() {
            // SAFETY: as above.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            if gro {
                // SAFETY: slot i's CMSG_ROOM bytes lie inside `cmsgs` (slots * CMSG_ROOM).
                h.msg_hdr.msg_control = unsafe { cmsg_base.add(i * CMSG_ROOM) }.cast();
                h.msg_hdr.msg_controllen = CMSG_ROOM as _;
            }
            self.hdrs.push(h);
        }
        use std::os::fd::AsRawFd;
        let hdrs = &mut self.hdrs;
        let mut n = 0usize;
        let res = sock.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: every header points at live buffers of this batch, unmoved for the call.
            let r = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            n = r as usize;
            if n < hdrs.len() {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match res {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock || n == 0 => return Err(e),
            _ => {}
        }
        for (i, (h, addr)) in self.hdrs.iter().zip(&self.addrs).take(n).enumerate() {
            // SAFETY: the kernel wrote an address of msg_namelen bytes.
            let from = unsafe { socket2::SockAddr::new(*addr, h.msg_hdr.msg_namelen) };
            let Some(from) = from.as_socket() else { continue };
            let len = h.msg_len as usize;
            let seg = if gro { gro_segment(&h.msg_hdr).unwrap_or(len) } else { len }.max(1);
            let start = i * self.slot;
            if len == 0 {
                self.got.push((start, 0, from));
            }
            for at in (0..len).step_by(seg) {
                self.got.push((start + at, seg.min(len - at), from));
            }
        }
        Ok(())
    }
}

/// The datagram size of a coalesced receive (the UDP_GRO cmsg), if the kernel sent one.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: msg_control/msg_controllen describe the buffer the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                return usize::try_from(v).ok().filter(|&v| v > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Turns on UDP_GRO for `sock`.
fn enable_gro(sock: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to an int of the given size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What a finished transfer measured.
pub struct Done {
    pub bytes: u64,
    pub retransmits: u32,
}

/// One read request to completion.
pub async fn rrq(cfg: &TftpCfg, path: &str, rng: &mut Lossy) -> Result<Done, Failure> {
    let bind: SocketAddr = if cfg.addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
    let sock = UdpSocket::bind(bind).await.map_err(Failure::Connect)?;
    if cfg.gro {
        enable_gro(&sock).map_err(Failure::Connect)?;
    }
    let req = request(cfg, path)?;
    sock.send_to(&req, cfg.addr).await.map_err(Failure::Io)?;

    // Room for a block plus one byte (an oversized DATA shows as such), and for OACK/ERROR.
    let mut rx = RecvBatch::new((cfg.blksize.map_or(512, usize::from) + 5).max(2048), 32, cfg.gro);
    let mut peer: Option<SocketAddr> = None;
    let mut blksize: usize = 512;
    let mut window: u64 = 1;
    let mut got: u64 = 0; // blocks received in order
    let mut acked: u64 = 0; // last block we acknowledged
    let mut bytes = 0u64;
    let mut hasher = cfg.expect_hash.map(|_| Hasher::default());
    let mut gap_acked = false;
    let mut retries = 0u32;
    let mut retransmits = 0u32;
    // What to re-send on timeout: the request until the server answers, then our last ACK.
    let mut last_ack: Option<Datagram> = None;

    loop {
        // Datagrams already queued are taken in batches (one recvmmsg for up to a window)
        // without arming a timer; only an empty socket waits, with the timeout.
        let received = loop {
            if let Some(v) = rx.pop() {
                break Ok(v);
            }
            match rx.fill(&sock) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(cfg.retransmit, sock.readable()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Err(Some(e)),
                        Err(_) => break Err(None),
                    }
                }
                Err(e) => break Err(Some(e)),
            }
        };
        let (slot, n, from) = match received {
            Ok(v) => v,
            Err(Some(e)) => return Err(Failure::Io(e)),
            Err(None) => {
                retries += 1;
                if retries > cfg.retries {
                    return Err(Failure::Timeout(if peer.is_none() {
                        "tftp-first-reply"
                    } else {
                        "tftp-data"
                    }));
                }
                retransmits += 1;
                let again = last_ack.as_ref().map_or(&req[..], Datagram::as_bytes);
                sock.send_to(again, peer.unwrap_or(cfg.addr)).await.map_err(Failure::Io)?;
                continue;
            }
        };
        let pkt = rx.packet(slot, n);
        if n < 4 {
            continue;
        }
        match peer {
            None if from.ip() == cfg.addr.ip() => peer = Some(from),
            Some(p) if p == from => {}
            // RFC 1350 section 4: a packet from an unknown TID gets ERROR 5 and is otherwise ignored.
            _ => {
                let stranger = ErrorCode::UnknownTransferId;
                let _ =
                    sock.send_to(Datagram::error(stranger, stranger.description()).as_bytes(), from).await;
                continue;
            }
        }
        let to = peer.unwrap_or(cfg.addr);
        match Repr::parse_bytes(pkt).map_err(malformed)? {
            Repr::Error { code, message } => {
                return Err(Failure::Tftp { code, text: String::from_utf8_lossy(message).into() });
            }
            Repr::Oack { options } if got == 0 => {
                apply_oack(&options, cfg, &mut blksize, &mut window)?;
                retries = 0;
                let ack = last_ack.insert(Datagram::ack(0));
                sock.send_to(ack.as_bytes(), to).await.map_err(Failure::Io)?;
            }
            Repr::Data { block, data: payload } => {
                if cfg.loss > 0.0 && rng.next_unit() < cfg.loss {
                    continue;
                }
                // Block numbers wrap to 0 after 65535, so compare modulo 2^16.
                let expected = (got + 1) as u16;
                if block != expected {
                    // RFC 7440 section 4: on a gap or a duplicate, acknowledge the last block
                    // received in order once, so the sender restarts the window from there.
                    if !gap_acked {
                        gap_acked = true;
                        acked = got;
                        let ack = last_ack.insert(Datagram::ack(got as u16));
                        sock.send_to(ack.as_bytes(), to).await.map_err(Failure::Io)?;
                    }
                    continue;
                }
                if payload.len() > blksize {
                    return Err(Failure::Protocol(format!(
                        "DATA of {} bytes over blksize {blksize}",
                        payload.len()
                    )));
                }
                got += 1;
                bytes += payload.len() as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(payload);
                }
                retries = 0;
                gap_acked = false;
                let last = payload.len() < blksize;
                if last || got - acked >= window {
                    acked = got;
                    let ack = last_ack.insert(Datagram::ack(block));
                    sock.send_to(ack.as_bytes(), to).await.map_err(Failure::Io)?;
                }
                if last {
                    break;
                }
            }
            // A repeated OACK after data started means our ACK 0 crossed it; nothing to do.
            Repr::Oack { .. } => {}
            other => return Err(Failure::Protocol(format!("unexpected TFTP packet {other:?}"))),
        }
    }
    if let Some(want) = cfg.expect_len {
        if want != bytes {
            return Err(Failure::Length { want, got: bytes });
        }
    }
    if let (Some(want), Some(h)) = (cfg.expect_hash, hasher) {
        if h.finish() != want {
            return Err(Failure::Hash);
        }
    }
    Ok(Done { bytes, retransmits })
}

/// One TFTP task: read requests until the budget is spent.
pub async fn get_task(task: usize, cfg: Arc<TftpCfg>, budget: Arc<Budget>) -> Stats {
    let mut stats = Stats::default();
    let mut rng = Lossy(cfg.seed ^ (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    while let Some(n) = budget.take() {
        let t0 = Instant::now();
        let path = cfg.path.replace("{n}", &n.to_string()).replace("{t}", &task.to_string());
        match rrq(&cfg, &path, &mut rng).await {
            Ok(done) => {
                stats.ok += 1;
                stats.bytes += done.bytes;
                stats.latency_us.push(t0.elapsed().as_micros() as u64);
                stats.retransmits += u64::from(done.retransmits);
            }
            Err(f) => stats.fail(&f),
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_the_asked_options() {
        let cfg = TftpCfg {
            addr: "127.0.0.1:69".parse().unwrap(),
            path: String::new(),
            blksize: Some(1468),
            windowsize: Some(16),
            tsize: true,
            timeout_opt: None,
            retransmit: Duration::from_secs(1),
            retries: 1,
            loss: 0.0,
            gro: false,
            expect_len: None,
            expect_hash: None,
            seed: 0,
        };
        assert_eq!(
            request(&cfg, "f").unwrap(),
            b"\x00\x01f\x00octet\x00blksize\x001468\x00windowsize\x0016\x00tsize\x000\x00"
        );
        let oack = |bytes| match Repr::parse_bytes(bytes) {
            Ok(Repr::Oack { options }) => Ok(options),
            other => Err(format!("{other:?}")),
        };
        let (mut blksize, mut window) = (512, 1);
        let granted = oack(b"\x00\x06BLKSIZE\x001468\x00tsize\x0042\x00").unwrap();
        apply_oack(&granted, &cfg, &mut blksize, &mut window).unwrap();
        assert_eq!((blksize, window), (1468, 1));
        let wrong_size = TftpCfg { expect_len: Some(41), ..cfg.clone() };
        assert!(matches!(
            apply_oack(&granted, &wrong_size, &mut blksize, &mut window),
            Err(Failure::Length { want: 41, got: 42 })
        ));
        let unasked = oack(b"\x00\x06blksize\x004\x00").unwrap();
        assert!(apply_oack(&unasked, &cfg, &mut blksize, &mut window).is_err(), "blksize under 8");
        assert!(oack(b"\x00\x06blksize\x00").is_err(), "an option without a value");
    }
}
