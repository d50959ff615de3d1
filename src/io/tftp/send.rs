//! Sending what a TFTP transfer's `poll_transmit` hands out, a window at a time: DATA
//! payloads are read behind their headers into pooled buffers (one preadv per run of
//! consecutive blocks: on the spot when the page cache holds them, else through the ring),
//! then equal-sized blocks leave in UDP GSO sends made on the spot (SENDMSG SQEs linked in
//! order when the socket is full), so a window costs a few syscalls.

use super::cache::CachedFile;
use crate::io::ring::buf_pool::{AheadReservation, BufPool};
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::udp_msg::{self, SendSpec};
use crate::tftp::wire::{write_data_header, DATA_HEADER_LEN};
use crate::tftp::Transmit;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use tracing::debug;

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: the whole must fit one IP datagram's length field.
const GSO_MAX_BYTES: usize = 65_000;

/// Where DATA payload comes from.
#[derive(Debug)]
pub enum Source {
    /// The file itself (octet mode): offsets are file offsets.
    File(SharedFd),
    /// The netascii-encoded file held in memory: offsets index the encoded bytes.
    Memory(Rc<Vec<u8>>),
    /// The file's bytes from the file cache (octet mode): offsets are file offsets.
    Cached(Arc<CachedFile>),
}

/// A transfer's socket and buffers.
#[derive(Debug)]
pub struct Link {
    /// The socket replies leave from: the transfer's own (its TID), or in single-port mode
    /// the request socket.
    pub sock: SharedFd,
    /// Source address for each send (pktinfo), on a request socket bound to a wildcard.
    from: Option<IpAddr>,
    /// The socket is IPv6 and may be dual-stack: IPv4 peers are sent to as ::ffff:a.b.c.d.
    mapped: bool,
    /// The worker's datagram buffers.
    pub pool: Rc<BufPool>,
    /// GSO still worth trying; off after the first send the kernel refused (the path MTU
    /// is below a segment, or the device cannot segment), then per-datagram sends.
    gso: bool,
    /// One window's datagrams, reused from window to window.
    bufs: Vec<Vec<u8>>,
    /// Destination and kind of each entry of `bufs`.
    outs: Vec<Out>,
    /// The next window's payloads, read while the client is still taking in this one, so
    /// its ACK is answered without a file read on the way.
    ahead: Option<Ahead>,
}

/// A read-ahead of the window expected next: full blocks from `offset` on.
struct Ahead {
    offset: u64,
    lens: Vec<usize>,
    op: ops::SlotsRead,
    /// Its share of the worker's read-ahead budget, held until it is used or dropped.
    _reserved: AheadReservation,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead").field("offset", &self.offset).field("blocks", &self.lens.len()).finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct Out {
    to: SocketAddr,
    data: bool,
}

/// Reading file bytes for DATA failed; the transfer is to be aborted.
#[derive(Debug)]
pub struct ReadFailed(pub io::Error);

impl Link {
    /// A link over `sock` drawing buffers from `pool`.
    pub fn new(sock: SharedFd, pool: Rc<BufPool>) -> Link {
        Link {
            sock,
            from: None,
            mapped: false,
            pool,
            gso: true,
            bufs: Vec::new(),
            outs: Vec::new(),
            ahead: None,
        }
    }

    /// A link over a request socket shared by many transfers (single-port mode): sends go
    /// from `from`, the address the request came to.
    pub fn shared(sock: SharedFd, pool: Rc<BufPool>, from: IpAddr) -> Link {
        let mapped = socket2::SockRef::from(&*sock)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.is_ipv6());
        Link { from: Some(from), mapped, ..Link::new(sock, pool) }
    }

    /// Builds, fills and sends `items` (one drain of `poll_transmit`, in order).
    pub async fn send(&mut self, items: &[Transmit], source: Option<&Source>) -> Result<(), ReadFailed> {
        let mut bufs = std::mem::take(&mut self.bufs);
        self.outs.clear();
        for item in items {
            let mut buf = self.pool.take();
            match *item {
                Transmit::Datagram { to, packet } => {
                    buf.extend_from_slice(packet.as_bytes());
                    self.outs.push(Out { to, data: false });
                }
                Transmit::Data { to, block, .. } => {
                    buf.resize(DATA_HEADER_LEN, 0);
                    // Cannot fail: the buffer was just sized to hold the header.
                    let _ = write_data_header(&mut buf, block);
                    self.outs.push(Out { to, data: true });
                }
            }
            bufs.push(buf);
        }
        let filled = match source {
            Some(src) => fill(src, &mut bufs, items, &self.pool, &mut self.ahead).await,
            None => Ok(()),
        };
        if filled.is_ok() {
            bufs = self.transmit(bufs).await;
            if let Some(Source::File(file)) = source {
                self.read_ahead(file, items);
            }
        }
        self.pool.give_all(&mut bufs);
        self.bufs = bufs;
        filled
    }

    /// After a window of full blocks, starts reading the window that follows it (same
    /// number of blocks) unless that read is already under way.
    fn read_ahead(&mut self, file: &SharedFd, items: &[Transmit]) {
        let mut count = 0;
        let mut full = 0;
        let mut next = None;
        for item in items {
            if let Transmit::Data { offset, len, .. } = *item {
                count += 1;
                full = full.max(len);
                next = Some((offset + len as u64, len));
            }
        }
        let Some((offset, last_len)) = next else { return };
        // A short block ends the file; a block that does not fit a pooled buffer is not ours.
        if last_len < full || full == 0 || DATA_HEADER_LEN + full > self.pool.capacity() {
            return;
        }
        if self.ahead.as_ref().is_some_and(|a| a.offset == offset && a.lens.len() == count) {
            return;
        }
        self.ahead = None;
        let Some(reserved) = self.pool.reserve_ahead(count) else { return };
        let lens = vec![full; count];
        let bufs = (0..count)
            .map(|_| {
                let mut b = self.pool.take();
                b.resize(DATA_HEADER_LEN, 0);
                b
            })
            .collect();
        // A stale read-ahead (not the window asked for) is dropped: it completes unobserved.
        let op = ops::read_into_slots_op(file, bufs, DATA_HEADER_LEN, &lens, offset);
        self.ahead = Some(Ahead { offset, lens, op, _reserved: reserved });
    }

    /// Sends every datagram of `bufs`; returns the buffers once all sends completed.
    async fn transmit(&mut self, bufs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let groups = plan_groups(&bufs, &self.outs, self.gso);
        let (bufs, gso_failed) = self.submit(bufs, &groups).await;
        if !gso_failed {
            return bufs;
        }
        debug!("UDP GSO refused; sending datagrams one by one from now on");
        self.gso = false;
        let groups = plan_groups(&bufs, &self.outs, false);
        self.submit(bufs, &groups).await.0
    }

    /// Sends each group on the spot; from the first group the socket cannot take right now
    /// (send buffer full) on, submits SENDMSG ops linked in order and awaits them. Returns the
    /// buffers and whether a GSO send failed (the window is then resent without GSO).
    async fn submit(&self, bufs: Vec<Vec<u8>>, groups: &[Range<usize>]) -> (Vec<Vec<u8>>, bool) {
        for (i, g) in groups.iter().enumerate() {
            let Some(spec) = self.spec(&bufs, g) else { continue };
            let gso = spec.segment.is_some();
            // SAFETY: the iovecs point into `bufs`, alive and unchanged for the call.
            match unsafe { udp_msg::try_send_msg(&self.sock, spec) } {
                Ok(Some(_)) => {}
                Ok(None) => return self.submit_queued(bufs, groups.get(i..).unwrap_or(&[])).await,
                Err(e) if gso => {
                    debug!("GSO send failed: {e}");
                    return (bufs, true);
                }
                // A lost datagram is the protocol's business: the timer resends the window.
                Err(e) => debug!("send failed: {e}"),
            }
        }
        (bufs, false)
    }

    /// The datagrams of `group` as one sendmsg (a GSO send when it has several).
    fn spec(&self, bufs: &[Vec<u8>], group: &Range<usize>) -> Option<SendSpec> {
        let members = bufs.get(group.clone()).unwrap_or(&[]);
        let iov = members
            .iter()
            .map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
            .collect();
        let segment = (group.len() > 1).then(|| members.first().map_or(0, |b| b.len() as u16));
        let to = self.outs.get(group.start)?.to;
        let to = match to {
            SocketAddr::V4(v4) if self.mapped => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            to => to,
        };
        Some(SendSpec { to, from: self.from, segment, iov })
    }

    /// Submits one SENDMSG per group through the ring, linked so they go out in order even
    /// when one has to wait for buffer room, and awaits them all.
    async fn submit_queued(&self, bufs: Vec<Vec<u8>>, groups: &[Range<usize>]) -> (Vec<Vec<u8>>, bool) {
        let bufs = Rc::new(bufs);
        let mut ops = Vec::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            let Some(spec) = self.spec(&bufs, g) else { continue };
            let gso = spec.segment.is_some();
            let link = i + 1 < groups.len();
            // SAFETY: the iovecs point into the heap buffers of the Vecs inside `bufs`; the
            // op holds an Rc clone, and nothing mutates them until every op completed.
            ops.push((gso, unsafe { udp_msg::send_msg(&self.sock, spec, Rc::clone(&bufs), link) }));
        }
        let mut gso_failed = false;
        for (gso, op) in ops {
            let (res, _) = op.await;
            match res {
                Err(e) if gso && e.raw_os_error() != Some(libc::ECANCELED) => {
                    debug!("GSO send failed: {e}");
                    gso_failed = true;
                }
                Err(e) => debug!("send failed: {e}"),
                Ok(_) => {}
            }
        }
        // Every op completed and dropped its clone, so this is the only owner left.
        let bufs = Rc::try_unwrap(bufs).unwrap_or_else(|rc| rc.iter().map(|_| Vec::new()).collect());
        (bufs, gso_failed)
    }
}

/// Splits the window into sends: runs of DATA to one peer whose datagrams all have the
/// first one's size except maybe a shorter last (the GSO shape), else single datagrams.
fn plan_groups(bufs: &[Vec<u8>], outs: &[Out], gso: bool) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < bufs.len() {
        let mut j = i + 1;
        let first = outs.get(i).copied();
        let seg = bufs.get(i).map_or(0, Vec::len);
        if let (true, Some(first)) = (gso && seg > 0, first) {
            let max = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / seg);
            while j < bufs.len()
                && j - i < max
                && outs.get(j).is_some_and(|o| o.data && first.data && o.to == first.to)
                && bufs.get(j - 1).map_or(0, Vec::len) == seg
                && bufs.get(j).map_or(usize::MAX, Vec::len) <= seg
            {
                j += 1;
            }
        }
        groups.push(i..j);
        i = j;
    }
    groups
}

/// Reads each DATA item's payload behind its header: one preadv per run of blocks whose
/// file ranges follow each other, or a copy from memory for netascii.
async fn fill(
    source: &Source,
    bufs: &mut [Vec<u8>],
    items: &[Transmit],
    pool: &BufPool,
    ahead: &mut Option<Ahead>,
) -> Result<(), ReadFailed> {
    let cap = pool.capacity();
    let mut i = 0;
    while i < items.len() {
        let Some(&Transmit::Data { offset, .. }) = items.get(i) else {
            i += 1;
            continue;
        };
        // Extend the run while the next item is DATA starting where this one ends.
        let mut lens = Vec::new();
        let mut end = offset;
        let mut j = i;
        while let Some(&Transmit::Data { offset: o, len, .. }) = items.get(j) {
            if o != end || DATA_HEADER_LEN + len > cap {
                break;
            }
            lens.push(len);
            end = o + len as u64;
            j += 1;
        }
        if j == i {
            return Err(ReadFailed(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let run = bufs.get_mut(i..j).unwrap_or(&mut []);
        if !take_ahead(ahead, pool, run, &lens, offset).await {
            read_run(source, run, &lens, offset).await?;
        }
        i = j;
    }
    Ok(())
}

/// Fills `run` from the read-ahead when it read exactly these blocks (a prefix of it, the
/// last maybe shorter); returns false when the run must be read from the file instead.
/// Any read-ahead is used up here: it was for the window following the one before.
async fn take_ahead(
    ahead: &mut Option<Ahead>,
    pool: &BufPool,
    run: &mut [Vec<u8>],
    lens: &[usize],
    offset: u64,
) -> bool {
    let Some(a) = ahead.take() else { return false };
    let n = lens.len();
    let fits = a.offset == offset
        && n > 0
        && n <= a.lens.len()
        && lens.iter().zip(&a.lens).enumerate().all(|(i, (l, al))| if i + 1 < n { l == al } else { l <= al });
    let total: usize = lens.iter().sum();
    let (res, mut bufs) = a.op.await;
    let ok = fits && res.is_ok_and(|got| got as usize >= total);
    if ok {
        for ((slot, b), &len) in run.iter_mut().zip(bufs.iter_mut()).zip(lens) {
            let (Some(head), Some(dst)) = (slot.get(..DATA_HEADER_LEN), b.get_mut(..DATA_HEADER_LEN)) else {
                continue;
            };
            dst.copy_from_slice(head);
            b.truncate(DATA_HEADER_LEN + len);
            std::mem::swap(slot, b);
        }
    }
    pool.give_all(&mut bufs);
    ok
}

/// Reads one run of blocks: from memory for netascii; for a file, first without waiting
/// (page cache only), then through the ring, which may wait on the disk off the worker.
async fn read_run(
    source: &Source,
    run: &mut [Vec<u8>],
    lens: &[usize],
    offset: u64,
) -> Result<(), ReadFailed> {
    let total: usize = lens.iter().sum();
    match source {
        Source::Memory(bytes) => copy_run(bytes, run, lens, offset),
        Source::Cached(file) => copy_run(file.bytes(), run, lens, offset),
        Source::File(_) if total == 0 => Ok(()),
        Source::File(file) if ops::try_read_cached_into_slots(file, run, DATA_HEADER_LEN, lens, offset) => {
            Ok(())
        }
        Source::File(file) => {
            let owned: Vec<Vec<u8>> = run.iter_mut().map(std::mem::take).collect();
            let (res, owned) = ops::read_into_slots(file, owned, DATA_HEADER_LEN, lens, offset).await;
            for (slot, buf) in run.iter_mut().zip(owned) {
                *slot = buf;
            }
            match res {
                Ok(n) if n as usize == total => Ok(()),
                // The file shrank under us: the promised size can no longer be sent.
                Ok(_) => Err(ReadFailed(io::Error::from_raw_os_error(libc::EIO))),
                Err(e) => Err(ReadFailed(e)),
            }
        }
    }
}

/// Copies one run of blocks out of a file held in memory.
fn copy_run(bytes: &[u8], run: &mut [Vec<u8>], lens: &[usize], offset: u64) -> Result<(), ReadFailed> {
    let mut at = usize::try_from(offset).unwrap_or(usize::MAX);
    for (buf, &len) in run.iter_mut().zip(lens) {
        let end = at.saturating_add(len);
        let src = bytes.get(at..end).ok_or(ReadFailed(io::Error::from_raw_os_error(libc::EINVAL)))?;
        buf.extend_from_slice(src);
        at = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(sizes: &[usize], data: bool) -> (Vec<Vec<u8>>, Vec<Out>) {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        (sizes.iter().map(|&n| vec![0; n]).collect(), sizes.iter().map(|_| Out { to, data }).collect())
    }

    #[test]
    fn full_blocks_and_a_short_last_form_one_gso_group() {
        let (b, o) = window(&[516, 516, 516, 100], true);
        assert_eq!(plan_groups(&b, &o, true), vec![0..4]);
        assert_eq!(plan_groups(&b, &o, false), vec![0..1, 1..2, 2..3, 3..4]);
    }

    #[test]
    fn groups_respect_segment_and_byte_caps() {
        let (b, o) = window(&[1472; 64], true);
        let g = plan_groups(&b, &o, true);
        assert_eq!(g, vec![0..44, 44..64], "44 x 1472 bytes fit under the GSO byte cap");
        let (b, o) = window(&[40_000, 40_000], true);
        assert_eq!(plan_groups(&b, &o, true), vec![0..1, 1..2]);
    }

    #[test]
    fn control_datagrams_are_sent_alone() {
        let (b, o) = window(&[20, 20], false);
        assert_eq!(plan_groups(&b, &o, true), vec![0..1, 1..2]);
    }
}
