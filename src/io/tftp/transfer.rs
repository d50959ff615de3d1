//! One TFTP transfer, on its own socket or (single-port mode) on the request socket: drives
//! the sans-IO `ReadTransfer` or `WriteTransfer` with received datagrams and timer expiries,
//! carrying out what it asks (send a window, store a chunk, commit), and logs when it ends.

use super::busy_poll::BusyPoll;
use super::cache::{CachedFile, FileCache, FileKey, LoadTicket, Lookup, Pending, Reader};
use super::inbox::Route;
use super::inlet::Inlet;
use super::limits::LiveEntry;
use super::send::{Link, ReadFailed, Source};
use crate::fs::{self, UploadTarget};
use crate::io::context::{CutSignal, Shared};
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::memory_budget::MemoryCharge;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::udp_msg::Received;
use crate::observe::metrics::{Metric, WorkerMetrics};
use crate::observe::xferlog::{AccessMode, Direction as XferDirection, XferRecord};
use crate::tftp::netascii::{Decoder, Encoder};
use crate::tftp::{
    negotiate, Direction, ErrorCode, Mode, Negotiated, Outcome, ReadTransfer, Refusal, Request, ServerCaps,
    TransferSettings, Transmit, WriteChunk, WriteTransfer,
};
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Receive errors in a row after which the socket is considered broken.
const MAX_RECV_ERRORS: u32 = 16;

/// What the request loop opened for a transfer.
#[derive(Debug)]
pub enum Opened {
    /// RRQ: the file and its identity and version (size included), from the open's fstat.
    Read { file: OwnedFd, key: FileKey },
    /// WRQ: the upload (a temporary name until committed).
    Write { target: UploadTarget },
}

/// Everything a transfer task starts with.
#[derive(Debug)]
pub struct Start {
    /// The client's address and port (canonical: IPv4 clients as IPv4).
    pub peer: SocketAddr,
    /// The client's TID in the worker's table of running transfers, which ignores a
    /// repeated request; given up once the outcome is settled.
    pub tid: LiveEntry,
    /// The validated request.
    pub request: Request,
    /// The opened file.
    pub opened: Opened,
    /// Where the transfer sends from and receives on.
    pub port: Port,
    /// What we grant.
    pub caps: ServerCaps,
    /// Timers and limits.
    pub settings: TransferSettings,
    /// Largest file served in netascii mode.
    pub netascii_max: u64,
    /// Memory all netascii transfers together may hold.
    pub netascii_memory: u64,
    /// The worker's datagram buffers.
    pub pool: Rc<BufPool>,
    /// Server-wide state: metrics and the xferlog.
    pub shared: Arc<Shared>,
    /// Bytes of netascii files held by all TFTP transfers (the budget's counter).
    pub netascii_bytes: Arc<AtomicU64>,
    /// This worker's number (its metrics block).
    pub worker: usize,
    /// Raised when the drain timeout has passed: the transfer ends with an ERROR.
    pub cut: CutSignal,
    /// Bytes the client acknowledged so far, shown in the live session view.
    pub acknowledged: Rc<Cell<u64>>,
    /// The server-wide cache of hot files.
    pub cache: Arc<FileCache>,
    /// How long to poll for the client's next datagram before sleeping (`tftp.busy_poll_us`).
    pub busy_poll: Duration,
}

/// The socket side of a transfer.
#[derive(Debug)]
pub enum Port {
    /// Its own socket (RFC 1350's fresh server TID), bound and not connected.
    Own(OwnedFd),
    /// Single-port mode: the request socket, shared; datagrams arrive through `route`, and
    /// replies leave from `from`, the address the request was sent to.
    Shared { sock: SharedFd, route: Route, from: IpAddr },
}

impl Port {
    /// The sending and the receiving side.
    fn split(self, pool: Rc<BufPool>) -> (Link, Inlet) {
        match self {
            Port::Own(fd) => {
                let sock: SharedFd = Rc::new(fd);
                (Link::new(Rc::clone(&sock), pool), Inlet::own(sock))
            }
            Port::Shared { sock, route, from } => (Link::shared(sock, pool, from), Inlet::Shared { route }),
        }
    }
}

/// What a transfer may be granted, and where its bytes may come from.
struct Limits {
    caps: ServerCaps,
    settings: TransferSettings,
    netascii_max: u64,
    netascii_memory: u64,
    cache: Arc<FileCache>,
}

/// The running state machine with its file side.
enum Job {
    /// `_charge` holds a netascii file's share of the memory budget while the transfer runs;
    /// `upgrade` ties a read from the file to the file cache (see [`Upgrade`]).
    Read {
        t: ReadTransfer,
        source: Source,
        upgrade: Option<Upgrade>,
        _charge: Option<MemoryCharge>,
    },
    Write {
        t: WriteTransfer,
        sink: Sink,
    },
}

/// Calls the same method on either state machine.
macro_rules! both {
    ($job:expr, $t:ident => $e:expr) => {
        match $job {
            Job::Read { $t, .. } => $e,
            Job::Write { $t, .. } => $e,
        }
    };
}

/// Runs a transfer to its end and logs the result.
pub async fn run(start: Start) {
    let began = Instant::now();
    let Start {
        peer,
        tid,
        request,
        opened,
        port,
        caps,
        settings,
        netascii_max,
        netascii_memory,
        pool,
        shared,
        netascii_bytes,
        worker,
        cut,
        acknowledged,
        cache,
        busy_poll,
    } = start;
    let metrics = shared.metrics.worker(worker);
    let running = shared.metrics.hold(worker, Metric::TftpTransfersActive);
    let (mut link, inlet) = port.split(pool);
    let limits = Limits { caps, settings, netascii_max, netascii_memory, cache };
    let file = request.path.display();
    let kind = if request.direction == Direction::Read { "RRQ" } else { "WRQ" };
    let mut complete = false;
    // What was granted, for the log: which clients run lock-step is what an operator of a
    // boot storm needs to know (firmware rarely says what it asked).
    let mut granted: Option<Negotiated> = None;
    let (bytes, outcome) = match prepare(peer, &request, opened, &limits, &netascii_bytes, metrics).await {
        Ok((mut job, values)) => {
            granted = Some(values);
            let mut inlet = inlet;
            let outcome =
                drive(&mut job, &mut link, &mut inlet, metrics, &cut, tid, &acknowledged, busy_poll).await;
            inlet.close(&link.pool).await;
            complete = matches!(outcome, Outcome::Complete { .. });
            // A failed transfer still logs and counts what the client acknowledged.
            let bytes = match &outcome {
                Outcome::Complete { bytes, .. } => *bytes,
                Outcome::Failed { .. } | Outcome::OptionsDeclined => both!(&job, t => t.bytes_acknowledged()),
            };
            if let Job::Write { sink, .. } = job {
                sink.finish(&outcome);
            }
            if outcome == Outcome::OptionsDeclined {
                // RFC 2347: ERROR 8 to our OACK before any data. UEFI does it on every boot
                // to learn the size, then asks again: not a transfer, so no xferlog line.
                info!(
                    kind,
                    %file,
                    blksize = values.blksize,
                    windowsize = values.windowsize,
                    duration_ms = began.elapsed().as_millis() as u64,
                    "TFTP options probe"
                );
                drop(running);
                metrics.inc(Metric::TftpOptionProbes);
                return;
            }
            (bytes, format!("{outcome:?}"))
        }
        Err(refusal) => {
            metrics.inc(Metric::TftpRequestsRefused);
            let to_send = [Transmit::Datagram { to: peer, packet: refusal.datagram() }];
            let _ = link.send(&to_send, None).await;
            // After the send: closing the transfer's own socket shuts it down.
            inlet.close(&link.pool).await;
            (0, format!("refused: {}", refusal.message))
        }
    };
    let took = began.elapsed();
    info!(
        kind,
        %file,
        bytes,
        blksize = granted.map(|v| v.blksize),
        windowsize = granted.map(|v| v.windowsize),
        duration_ms = took.as_millis() as u64,
        outcome,
        "TFTP transfer ended"
    );
    // No longer active before it counts as finished: a scrape never sees it as both.
    drop(running);
    account(&shared, worker, peer, &request, bytes, complete, took);
}

/// Counts a finished transfer and writes its xferlog line (TFTP has no users: anonymous).
fn account(
    shared: &Shared,
    worker: usize,
    peer: SocketAddr,
    request: &Request,
    bytes: u64,
    complete: bool,
    took: Duration,
) {
    let metrics = shared.metrics.worker(worker);
    metrics.inc(if complete { Metric::TftpTransfersCompleted } else { Metric::TftpTransfersFailed });
    let upload = request.direction == Direction::Write;
    metrics.add(if upload { Metric::TftpBytesReceived } else { Metric::TftpBytesSent }, bytes);
    let Some(log) = &shared.xferlog else { return };
    let mut path = b"/".to_vec();
    path.extend_from_slice(request.path.as_os_str().as_bytes());
    let record = XferRecord {
        end: std::time::SystemTime::now(),
        duration: took,
        remote: peer.ip(),
        bytes,
        path: &path,
        binary: request.mode != crate::tftp::Mode::Netascii,
        direction: if upload { XferDirection::Incoming } else { XferDirection::Outgoing },
        access: AccessMode::Anonymous,
        user: "anonymous",
        service: "tftp",
        complete,
    };
    if let Err(e) = log.write(&record) {
        tracing::warn!("cannot write the xferlog: {e}");
    }
}

/// Opens the data side and negotiates (RFC 2347): netascii files are encoded first so
/// `tsize` reports what will really be sent.
async fn prepare(
    peer: SocketAddr,
    request: &Request,
    opened: Opened,
    limits: &Limits,
    netascii_held: &Arc<AtomicU64>,
    metrics: &WorkerMetrics,
) -> Result<(Job, Negotiated), Refusal> {
    let Limits { caps, settings, netascii_max, netascii_memory, cache } = limits;
    let now = Instant::now();
    match opened {
        Opened::Read { file, key } => {
            let len = key.size();
            let file = Rc::new(file);
            let (source, upgrade, len, charge) = match request.mode {
                Mode::Octet => {
                    let (source, upgrade) = cached_source(file, key, cache, metrics);
                    (source, upgrade, len, None)
                }
                Mode::Netascii => {
                    if len > *netascii_max {
                        return Err(Refusal::new(ErrorCode::NotDefined, "file too large for netascii mode"));
                    }
                    // Each transfer holds its own encoded copy: without a budget, requests
                    // for a large file would take memory without bound.
                    let charge =
                        MemoryCharge::acquire(netascii_held, len.saturating_mul(2), *netascii_memory)
                            .ok_or(Refusal::busy())?;
                    let encoded = load_netascii(&file, len)
                        .await
                        .map_err(|_| Refusal::new(ErrorCode::NotDefined, "cannot read file"))?;
                    let n = encoded.len() as u64;
                    (Source::Memory(Rc::new(encoded)), None, n, Some(charge))
                }
            };
            let neg = negotiate(Direction::Read, &request.options, caps, Some(len))?;
            let job = Job::Read {
                t: ReadTransfer::new(peer, &neg, len, settings, now),
                source,
                upgrade,
                _charge: charge,
            };
            Ok((job, neg.values))
        }
        Opened::Write { target } => {
            let neg = negotiate(Direction::Write, &request.options, caps, None)?;
            let file = target
                .file
                .try_clone()
                .map_err(|_| Refusal::new(ErrorCode::NotDefined, "cannot open file"))?;
            let decoder = (request.mode == Mode::Netascii).then(Decoder::new);
            let sink = Sink { target: Some(target), file: Rc::new(file), decoder, written: 0 };
            Ok((Job::Write { t: WriteTransfer::new(peer, &neg, settings, now), sink }, neg.values))
        }
    }
}

/// How a read from the file stands with the file cache.
#[derive(Debug)]
enum Upgrade {
    /// The cache is reading the file in: switch to memory once it is there.
    Loading(Arc<Pending>),
    /// Nobody else reads the file now: this token marks the transfer as its reader, so a
    /// second request meanwhile loads the file into the cache.
    Alone { _reader: Reader },
}

impl Upgrade {
    /// The file's bytes, once the cache has them.
    fn ready(&self) -> Option<&Arc<CachedFile>> {
        match self {
            Upgrade::Loading(pending) => pending.get(),
            Upgrade::Alone { .. } => None,
        }
    }
}

/// Where an octet read's DATA comes from: the file cache when it holds the file, else the
/// file itself, with the cache's load to switch to when one is under way; a request for a
/// cacheable file that another transfer reads now starts reading it in.
fn cached_source(
    file: SharedFd,
    key: FileKey,
    cache: &Arc<FileCache>,
    metrics: &WorkerMetrics,
) -> (Source, Option<Upgrade>) {
    match cache.lookup(key) {
        Lookup::Hit(cached) => {
            metrics.inc(Metric::TftpCacheHits);
            (Source::Cached(cached), None)
        }
        Lookup::Load(ticket) => {
            metrics.inc(Metric::TftpCacheMisses);
            // In the background: this transfer starts at once from the file, and requests
            // arriving meanwhile do too (they find the file loading, not a second load); all
            // of them switch to memory when it is in.
            let pending = ticket.pending();
            tokio_uring::spawn(fill_cache(ticket, Rc::clone(&file)));
            (Source::File(file), Some(Upgrade::Loading(pending)))
        }
        Lookup::Loading(pending) => {
            metrics.inc(Metric::TftpCacheMisses);
            (Source::File(file), Some(Upgrade::Loading(pending)))
        }
        Lookup::Miss => {
            metrics.inc(Metric::TftpCacheMisses);
            (Source::File(file), None)
        }
        Lookup::Alone(reader) => {
            metrics.inc(Metric::TftpCacheMisses);
            (Source::File(file), Some(Upgrade::Alone { _reader: reader }))
        }
        Lookup::Uncacheable => (Source::File(file), None),
    }
}

/// Reads a file into the cache; a read error or a change while reading stores nothing.
async fn fill_cache(ticket: LoadTicket, file: SharedFd) {
    let expected = ticket.key().size();
    match read_whole(&file, expected).await {
        Ok(bytes) => match FileKey::of(&*file) {
            Ok(now) if ticket.finish(bytes, now) => debug!(bytes = expected, "file cached"),
            _ => debug!("file changed while being cached; not stored"),
        },
        Err(e) => debug!("cannot read a file into the cache: {e}"),
    }
}

/// Reads a whole file and encodes it to netascii.
async fn load_netascii(file: &SharedFd, len: u64) -> io::Result<Vec<u8>> {
    let raw = read_whole(file, len).await?;
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    Encoder.encode(&raw, &mut out);
    Ok(out)
}

/// Reads a whole file of `len` bytes (checked against a limit by the caller); EFBIG when it
/// grew beyond that meanwhile.
async fn read_whole(file: &SharedFd, len: u64) -> io::Result<Vec<u8>> {
    const CHUNK: usize = 1 << 20;
    let mut raw = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let (res, c) = ops::read_at(file, chunk, raw.len() as u64).await;
        chunk = c;
        match res? {
            0 => break,
            _ => raw.extend_from_slice(&chunk),
        }
        if raw.len() as u64 > len {
            // The file grew beyond what was checked against the limit.
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
    }
    Ok(raw)
}

/// The loop: send what the machine wants, then wait for a datagram or its deadline.
#[allow(clippy::too_many_arguments)]
async fn drive(
    job: &mut Job,
    link: &mut Link,
    inlet: &mut Inlet,
    metrics: &WorkerMetrics,
    cut: &CutSignal,
    tid: LiveEntry,
    acknowledged: &Cell<u64>,
    busy_poll: Duration,
) -> Outcome {
    let mut items: Vec<Transmit> = Vec::new();
    let mut recv_errors = 0u32;
    let mut was_cut = false;
    let mut tid = Some(tid);
    let pool = Rc::clone(&link.pool);
    let mut poll = BusyPoll::new(busy_poll);
    loop {
        let sent = flush(job, link, &mut items).await;
        metrics.add(Metric::TftpDatagramsSent, sent as u64);
        acknowledged.set(both!(job, t => t.bytes_acknowledged()));
        if let Some(outcome) = both!(job, t => t.outcome()) {
            return outcome;
        }
        // An upload that sent its final ACK only dallies for a repeated last DATA (RFC 1350
        // §6), which comes to this socket: a request from the client's port is new.
        if matches!(job, Job::Write { t, .. } if t.settled()) {
            drop(tid.take());
        }
        let now = Instant::now();
        // A running machine always has a deadline; the fallback only guards a bug.
        let deadline = both!(job, t => t.poll_timeout()).unwrap_or(now + Duration::from_secs(1));
        let polled = poll.poll(inlet, &pool, metrics, deadline, cut).await;
        let event = if polled.is_some() {
            polled
        } else {
            tokio::select! {
                // In this order: the cut, so no flood of datagrams can hide it; a datagram
                // before the timer, so a worker that wakes late reads the ACK that is waiting
                // before it resends what that ACK acknowledged.
                biased;
                _ = cut.wait(), if !was_cut => {
                    was_cut = true;
                    both!(job, t => t.abort(ErrorCode::NotDefined, "server shutting down"));
                    continue;
                }
                d = inlet.next(&pool) => Some(d),
                _ = tokio::time::sleep_until(deadline.into()) => None,
            }
        };
        if let Some((res, buf)) = event {
            poll.answered();
            pool.give(on_receive(job, res, buf, &mut recv_errors).await);
        }
        // Checked after datagrams too, so a stream of stray packets cannot starve the timer.
        if timer_due(job) {
            // The ring receive brings one datagram; more may wait in the socket. They
            // go first too: each may move the deadline or end the transfer.
            drain(job, inlet, &pool, &mut recv_errors).await;
            if timer_due(job) {
                both!(job, t => t.handle_timeout(Instant::now()));
                // What a timeout makes the machine send again is a retransmission.
                let resent = flush(job, link, &mut items).await;
                metrics.add(Metric::TftpRetransmissions, resent as u64);
                metrics.add(Metric::TftpDatagramsSent, resent as u64);
            }
        }
    }
}

/// True when the machine's deadline has passed.
fn timer_due(job: &Job) -> bool {
    both!(job, t => t.poll_timeout()).is_some_and(|d| d <= Instant::now())
}

/// Datagrams taken from the socket without waiting before a timeout is handled: a whole
/// window of DATA from an uploading client at the default `max_windowsize` (RFC 7440).
const DRAIN_MAX: usize = 64;

/// Feeds the datagrams already waiting, without waiting.
async fn drain(job: &mut Job, inlet: &mut Inlet, pool: &BufPool, recv_errors: &mut u32) {
    for _ in 0..DRAIN_MAX {
        let Some((res, buf)) = inlet.try_next(pool) else { return };
        let failed = res.is_err();
        pool.give(on_receive(job, res, buf, recv_errors).await);
        if failed || both!(job, t => t.outcome()).is_some() {
            return;
        }
    }
}

/// Feeds one receive's result; receive errors in a row end the transfer.
async fn on_receive(
    job: &mut Job,
    res: io::Result<Received>,
    buf: Vec<u8>,
    recv_errors: &mut u32,
) -> Vec<u8> {
    match res {
        Ok(Received { from: Some(from), .. }) => {
            *recv_errors = 0;
            on_datagram(job, from, buf).await
        }
        other => {
            *recv_errors += 1;
            debug!(?other, "receive failed");
            if *recv_errors >= MAX_RECV_ERRORS {
                both!(job, t => t.abort(ErrorCode::NotDefined, "server receive error"));
            }
            buf
        }
    }
}

/// Drains `poll_transmit` and sends it; a failed file read aborts, whose ERROR goes next.
async fn flush(job: &mut Job, link: &mut Link, items: &mut Vec<Transmit>) -> usize {
    let mut sent = 0;
    loop {
        items.clear();
        while let Some(t) = both!(job, t => t.poll_transmit()) {
            items.push(t);
        }
        if items.is_empty() {
            return sent;
        }
        sent += items.len();
        let source = match job {
            Job::Read { source, upgrade, .. } => {
                // The file cache finished loading this file: the rest comes from memory.
                if let Some(cached) = upgrade.as_ref().and_then(Upgrade::ready) {
                    *source = Source::Cached(Arc::clone(cached));
                    *upgrade = None;
                }
                Some(&*source)
            }
            Job::Write { .. } => None,
        };
        if let Err(ReadFailed(e)) = link.send(items, source).await {
            debug!("file read failed: {e}");
            both!(job, t => t.abort(ErrorCode::NotDefined, "file read error"));
        }
    }
}

/// Feeds one datagram; for a WRQ stores the accepted chunk before anything is sent.
async fn on_datagram(job: &mut Job, from: SocketAddr, buf: Vec<u8>) -> Vec<u8> {
    let now = Instant::now();
    match job {
        Job::Read { t, .. } => {
            t.handle_datagram(from, &buf, now);
            buf
        }
        Job::Write { t, sink } => {
            let Some(chunk) = t.handle_datagram(from, &buf, now) else { return buf };
            let (res, buf) = sink.store(buf, &chunk).await;
            if let Err(e) = res {
                debug!("upload write failed: {e}");
                // EEXIST: a create-only upload whose name appeared meanwhile (commit refused).
                let refusal = Refusal::for_file(fs::classify(e), "write error");
                t.abort(refusal.code, refusal.message);
            }
            buf
        }
    }
}

/// The file side of an upload.
struct Sink {
    target: Option<UploadTarget>,
    file: SharedFd,
    decoder: Option<Decoder>,
    /// Bytes written to the file (after netascii decoding).
    written: u64,
}

impl Sink {
    /// Writes `buf[chunk.data]`; on the last chunk flushes and commits the upload.
    async fn store(&mut self, buf: Vec<u8>, chunk: &WriteChunk) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = match &mut self.decoder {
            None => {
                let (res, buf) = ops::write_all_at(&self.file, buf, chunk.data.clone(), chunk.offset).await;
                self.written = chunk.offset + chunk.data.len() as u64;
                (res, buf)
            }
            Some(decoder) => {
                let mut out = Vec::with_capacity(chunk.data.len() + 1);
                decoder.decode(buf.get(chunk.data.clone()).unwrap_or(&[]), &mut out);
                if chunk.last {
                    decoder.finish(&mut out);
                }
                let n = out.len();
                let (res, _) = ops::write_all_at(&self.file, out, 0..n, self.written).await;
                self.written += n as u64;
                (res, buf)
            }
        };
        if res.is_err() || !chunk.last {
            return (res, buf);
        }
        (self.commit().await, buf)
    }

    /// Makes the upload durable through the ring, then gives it its final name.
    async fn commit(&mut self) -> io::Result<()> {
        ops::fdatasync(&self.file).await?;
        match self.target.take() {
            Some(target) => target.commit(),
            None => Ok(()),
        }
    }

    /// Removes an upload that did not complete (its temporary file never became visible).
    fn finish(mut self, outcome: &Outcome) {
        if let Some(target) = self.target.take() {
            debug!(?outcome, "upload abandoned");
            target.abandon();
        }
    }
}

/// pwrite of all of `buf[range]` at `offset`, continuing after short writes.
#[cfg(test)]
mod tests;
