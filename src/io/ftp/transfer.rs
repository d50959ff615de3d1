//! One FTP data transfer as a task: the file (or listing) is opened first by [`prepare`],
//! then [`run`] gets the data connection, reports `Started`, moves the bytes (zero-copy for
//! binary files, buffered with CRLF conversion for TYPE A and listings) and reports the end.

use super::actions::{self, rel};
use super::crlf::{from_crlf, to_crlf};
use super::data;
use super::ktls::{self, Path, Want};
use super::msg::Msg;
use super::state::{FtpWorker, SessionConfig};
use super::tls::{self, DataStream, DataTls, HandshakeError};
use crate::fs::{self, Root, UploadTarget, WriteMode};
use crate::ftp::ListFormat;
use crate::ftp::{FsError, OpResult, OpToken, StoreMode, TransferError, TransferEvent, TransferKind};
use crate::io::context::WorkerContext;
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::memory_budget::MemoryCharge;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::sockets::{self, Cancel};
use crate::io::ring::zerocopy::{self, DataConn, Pacer, TransferLimits};
use crate::observe::metrics::Metric;
use crate::observe::xferlog::{AccessMode, Direction, XferRecord};
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tracing::{debug, info};

/// Buffer of the TYPE A paths (one per running ASCII transfer).
const ASCII_CHUNK: usize = 64 * 1024;

/// What a transfer reads from or writes to, opened before the data connection is used.
pub enum Source {
    /// RETR: the file and where to start.
    Retr {
        /// Open file.
        file: SharedFd,
        /// REST offset.
        offset: u64,
        /// Bytes from `offset` to the end of the file when it was opened: what is sent.
        len: u64,
        /// TYPE A: LF -> CRLF.
        ascii: bool,
    },
    /// STOR/APPE/STOU: the upload target and where to write.
    Stor {
        /// Open upload.
        target: UploadTarget,
        /// First byte's file offset.
        offset: u64,
        /// APPE to a file that exists: its size before the append, restored if it fails.
        restore: Option<u64>,
        /// TYPE A: CRLF -> LF.
        ascii: bool,
    },
    /// LIST/NLST/MLSD: the rendered listing (already CRLF-terminated lines), and its share
    /// of the listing memory budget until it is sent.
    List(Vec<u8>, MemoryCharge),
}

/// Most memory all rendered listings may hold together. A listing is built whole before
/// the data connection drains it (about 120 bytes per entry), so clients that ask for big
/// directories and never read would otherwise hold memory without a bound; past this,
/// LIST/NLST/MLSD get 451 until others finish.
pub const LISTING_MEMORY_BYTES: u64 = 256 << 20;

/// Where the data connection comes from.
pub enum Endpoint {
    /// Accept on the session's passive listener.
    Passive(data::Passive),
    /// Connect to the client.
    Active(SocketAddr),
}

/// Opens what `kind` reads or writes under `root`; a listing is charged to `listing_bytes`.
pub fn prepare(
    root: &Root,
    kind: &TransferKind,
    atomic: bool,
    keep_partial: bool,
    listing_bytes: &Arc<AtomicU64>,
) -> Result<Source, FsError> {
    match kind {
        TransferKind::Retr { path, offset, ascii } => {
            let (file, meta) = root.open_read(rel(path)).map_err(fs::classify)?;
            if *offset > meta.len() {
                return Err(FsError::OffsetBeyondEnd);
            }
            // The size now is what this RETR sends: a file that grows meanwhile is sent as
            // it was opened, one that shrinks fails the transfer (451) instead of ending
            // early with a 226 the client would take for the whole file.
            let len = meta.len() - offset;
            Ok(Source::Retr { file: Rc::new(file), offset: *offset, len, ascii: *ascii })
        }
        TransferKind::Stor { path, mode, offset, ascii } => {
            let wmode = match mode {
                StoreMode::Replace if *offset > 0 => WriteMode::Resume,
                StoreMode::Replace => WriteMode::Truncate,
                StoreMode::Append => WriteMode::Append,
                StoreMode::CreateNew => WriteMode::CreateNew,
            };
            // Whether an APPE extends a file or creates one (a failed one is undone, below).
            let existed = wmode == WriteMode::Append && root.stat(rel(path)).is_ok();
            let target = root.open_upload(rel(path), wmode, atomic, keep_partial).map_err(fs::classify)?;
            let mut offset = *offset;
            let mut restore = None;
            if wmode == WriteMode::Append {
                // splice(2) refuses O_APPEND targets: write at the current end explicitly.
                offset = append_offset(&target).map_err(fs::classify)?;
                restore = existed.then_some(offset);
            } else if wmode == WriteMode::Resume {
                // RFC 3659 §5.3: a restart past the end would leave a hole the client never
                // sent; refused (554) like a RETR past the end.
                let size = nix::sys::stat::fstat(target.file.as_raw_fd())
                    .map_err(|e| fs::classify(io::Error::from(e)))?
                    .st_size;
                if offset > size.max(0) as u64 {
                    return Err(FsError::OffsetBeyondEnd);
                }
            }
            Ok(Source::Stor { target, offset, restore, ascii: *ascii })
        }
        TransferKind::List { path, format, hidden, glob } => {
            // MLSD lists directories only; LIST and NLST also show a single file, as `ls`.
            if matches!(format, ListFormat::Facts { .. })
                && !root.stat(rel(path)).map_err(fs::classify)?.is_dir()
            {
                return Err(FsError::NotADirectory);
            }
            let text = actions::listing(root, path, *format, *hidden, glob.as_ref())?;
            let charge = MemoryCharge::acquire(listing_bytes, text.len() as u64, LISTING_MEMORY_BYTES)
                .ok_or(FsError::Busy)?;
            Ok(Source::List(text, charge))
        }
    }
}

fn append_offset(target: &UploadTarget) -> io::Result<u64> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = target.file.as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_APPEND))?;
    Ok(nix::sys::stat::fstat(fd)?.st_size.max(0) as u64)
}

/// Everything a transfer task needs.
pub struct Job {
    /// The session's token for this transfer.
    pub token: OpToken,
    /// Opened source.
    pub source: Source,
    /// Data connection.
    pub endpoint: Endpoint,
    /// The control connection's local address (active connections leave from it).
    pub local_ip: IpAddr,
    /// Cancellation from the control side.
    pub cancel: Rc<Cancel>,
    /// `RETR /path` for logs.
    pub label: String,
    /// What the xferlog records about it; `None` for listings (not file transfers).
    pub record: Option<XferMeta>,
    /// The session's configuration (fixed when the session started).
    pub conf: SessionConfig,
    /// Bytes moved so far, shared with the session's entry in the live view.
    pub moved: Rc<Cell<u64>>,
    /// PROT P: the data connection runs TLS bound to the control session.
    pub tls: Option<DataTls>,
}

/// The xferlog facts of a file transfer, fixed when it starts.
#[derive(Debug, Clone)]
pub struct XferMeta {
    /// Client address.
    pub remote: IpAddr,
    /// Virtual path as the client sees it.
    pub path: String,
    /// TYPE I (else TYPE A).
    pub binary: bool,
    /// Download or upload.
    pub direction: Direction,
    /// Login name.
    pub user: Arc<str>,
    /// Anonymous login.
    pub anonymous: bool,
}

/// Runs a transfer to its end, reporting `Started` and then the outcome on `tx`.
pub async fn run(ctx: Rc<WorkerContext>, ftp: Rc<FtpWorker>, mut job: Job, tx: Sender<Msg>) {
    let _active = ctx.activity();
    let running = ctx.shared.metrics.hold(ctx.id, Metric::FtpTransfersActive);
    ftp.transfers.set(ftp.transfers.get() + 1);
    let limits = ftp.transfer_limits(job.conf.ftp());
    let token = job.token;
    let record = job.record.take();
    let label = job.label.clone();
    let started = std::time::Instant::now();
    let (outcome, bytes, tls_path) = drive(&ctx, &ftp, job, limits, &tx).await;
    ftp.transfers.set(ftp.transfers.get() - 1);
    // One structured line per transfer: journald keeps every field (FILE, USER, BYTES, ...).
    let result = match &outcome {
        TransferEvent::Finished { .. } => "complete".to_string(),
        other => format!("{other:?}"),
    };
    info!(
        transfer = %label,
        user = record.as_ref().map(|r| &*r.user).unwrap_or("-"),
        bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        rate_bps = limits.rate_bps,
        tls = tls_path.name(),
        result,
        "FTP transfer ended"
    );
    // No longer active before it counts as finished: a scrape never sees it as both.
    drop(running);
    match tls_path {
        TlsPath::Kernel => ctx.shared.metrics.worker(ctx.id).inc(Metric::FtpTlsTransfersKernel),
        TlsPath::UserSpace => ctx.shared.metrics.worker(ctx.id).inc(Metric::FtpTlsTransfersUserSpace),
        TlsPath::None | TlsPath::Unsettled | TlsPath::Refused => {}
    }
    account(&ctx, record.as_ref(), &outcome, bytes, started.elapsed());
    let _ = tx.send(Msg::Completion(token, Box::new(OpResult::Transfer(outcome)))).await;
}

/// How a transfer's data was protected, for its log line and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsPath {
    /// Clear (PROT C).
    None,
    /// PROT P, but the transfer ended before its data connection had a TLS path (no
    /// connection, an abort, a failed handshake): neither path's counter takes it.
    Unsettled,
    /// rustls in user space.
    UserSpace,
    /// The kernel's `tls` ULP.
    Kernel,
    /// `ftp.tls.ktls = "require"` and the kernel could not take it: nothing moved.
    Refused,
}

impl TlsPath {
    fn name(self) -> &'static str {
        match self {
            TlsPath::None => "none",
            TlsPath::Unsettled => "unsettled",
            TlsPath::UserSpace => "user-space",
            TlsPath::Kernel => "kernel",
            TlsPath::Refused => "refused",
        }
    }
}

/// Counts a finished transfer and writes its xferlog line; `bytes` is what it moved, also
/// when it failed (an `i` line with the real count, as wu-ftpd writes).
fn account(
    ctx: &WorkerContext,
    record: Option<&XferMeta>,
    outcome: &TransferEvent,
    bytes: u64,
    took: Duration,
) {
    let metrics = ctx.shared.metrics.worker(ctx.id);
    let complete = matches!(outcome, TransferEvent::Finished { .. });
    metrics.inc(if complete { Metric::FtpTransfersCompleted } else { Metric::FtpTransfersFailed });
    let Some(meta) = record else {
        metrics.add(Metric::FtpBytesSent, bytes); // a listing
        return;
    };
    metrics.add(
        if meta.direction == Direction::Outgoing { Metric::FtpBytesSent } else { Metric::FtpBytesReceived },
        bytes,
    );
    if let Some(log) = &ctx.shared.xferlog {
        let line = XferRecord {
            end: std::time::SystemTime::now(),
            duration: took,
            remote: meta.remote,
            bytes,
            path: meta.path.as_bytes(),
            binary: meta.binary,
            direction: meta.direction,
            access: if meta.anonymous { AccessMode::Anonymous } else { AccessMode::Real },
            user: &meta.user,
            service: "ftp",
            complete,
        };
        if let Err(e) = log.write(&line) {
            tracing::warn!("cannot write the xferlog: {e}");
        }
    }
}

async fn drive(
    ctx: &WorkerContext,
    ftp: &FtpWorker,
    job: Job,
    limits: TransferLimits,
    tx: &Sender<Msg>,
) -> (TransferEvent, u64, TlsPath) {
    let Job { token, source, endpoint, local_ip, cancel, label, conf, moved, tls, .. } = job;
    // Before the data connection: the transfer has no TLS path yet.
    let tls_path = if tls.is_some() { TlsPath::Unsettled } else { TlsPath::None };
    let cfg = conf.ftp();
    let (mode, conn) = match endpoint {
        Endpoint::Passive(passive) => {
            // A client connects as soon as it sent the command; one that never does gets 425
            // after the accept timeout rather than the (long) data timeout, and the port
            // is free again.
            let timeout = Duration::from_secs(cfg.passive.accept_timeout_secs);
            ("passive", data::accept(passive, timeout, &cfg.proxy_protocol, &cancel).await.map(|c| c.0))
        }
        Endpoint::Active(target) => {
            let timeout = Duration::from_secs(cfg.active.connect_timeout_secs);
            let binder = ctx.binder.as_ref();
            (
                "active",
                data::connect(binder, cfg.active_source_port, local_ip, target, timeout, &cancel).await,
            )
        }
    };
    let sock = match conn {
        Ok(s) => s,
        Err(e) => {
            info!(transfer = %label, mode, error = %e, "data connection failed");
            // An upload target left unused is removed by its Drop.
            drop(source);
            let error =
                if cancel.is_aborted() { TransferError::Aborted } else { TransferError::DataConnection };
            return (TransferEvent::Failed(error), 0, tls_path);
        }
    };
    data::log_connection(mode, &sock);
    if cancel.watch(&sock).is_err() {
        return (TransferEvent::Failed(TransferError::Aborted), 0, tls_path);
    }
    let _ = tx.send(Msg::Completion(token, Box::new(OpResult::Transfer(TransferEvent::Started)))).await;
    // RFC 4217 §7: the client starts the data connection's handshake once it read the 150.
    let kernel = &ftp.shared.ktls;
    let want = match &source {
        Source::Stor { .. } => Want::Receive,
        Source::Retr { .. } | Source::List(..) => Want::Send,
    };
    let path = match &tls {
        None => None,
        Some(tls) => {
            let timeout = Duration::from_secs(cfg.passive.accept_timeout_secs);
            let upload = want == Want::Receive;
            // Record by record only when the kernel may take over receiving: no byte past
            // the handshake may then be read in user space. A download's kernel only sends.
            match tls::handshake(&sock, tls, timeout, upload, upload && kernel.enabled()).await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tls::refuse(&sock);
                    drop(source);
                    let error = match e {
                        _ if cancel.is_aborted() => TransferError::Aborted,
                        HandshakeError::NotResumed => {
                            info!(transfer = %label, "data connection refused: its TLS did not resume the control connection's session (ftp.tls.require_session_reuse)");
                            TransferError::TlsNotResumed
                        }
                        HandshakeError::Failed(e) => {
                            info!(transfer = %label, error = %e, "data connection TLS handshake failed");
                            TransferError::TlsHandshake
                        }
                    };
                    return (TransferEvent::Failed(error), 0, tls_path);
                }
            }
        }
    };
    let conn = DataConn { moved, ..DataConn::new(&sock, &ftp.pipes, limits, &cancel.zero_copy) };
    let path = match path.map(|stream| ktls::hand_off(&sock, stream, want, kernel)).transpose() {
        Ok(path) => path,
        Err(e) => {
            info!(transfer = %label, error = %e, "data connection failed");
            return (TransferEvent::Failed(TransferError::Local), 0, TlsPath::Kernel);
        }
    };
    let (result, tls_path) = match path {
        None => (move_data(&conn, cfg.zero_copy, source, &cancel, None).await, tls_path),
        Some(Path::UserSpace(mut stream)) => {
            (move_data_tls(&conn, &mut stream, &ftp.tls_buffers, source, &cancel).await, TlsPath::UserSpace)
        }
        Some(Path::Kernel { early }) => {
            (move_data(&conn, cfg.zero_copy, source, &cancel, Some(early)).await, TlsPath::Kernel)
        }
        Some(Path::Refused(mut stream, why)) => {
            info!(transfer = %label, reason = %why, "data connection refused");
            let _ = tls::finish_send(&sock, &mut stream.conn, &mut Vec::new(), limits.stall_timeout).await;
            drop(source);
            (Err(TransferError::Local), TlsPath::Refused)
        }
    };
    // FIN after the queued bytes; the Rc clones (cancel, pipes) must not keep it open.
    let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    match result {
        Ok(bytes) => {
            debug!(transfer = %label, bytes, rate_bps = limits.rate_bps, "data moved");
            (TransferEvent::Finished { bytes }, bytes, tls_path)
        }
        Err(e) => {
            let bytes = conn.moved.get();
            debug!(transfer = %label, bytes, error = ?e, "data transfer stopped");
            (TransferEvent::Failed(e), bytes, tls_path)
        }
    }
}

/// The core's reading of a mid-transfer error: a file out of room keeps its kind (it has a
/// reply of its own); the data connection's end is an abort; the rest, a read error or a
/// file cut short under a RETR ([`zerocopy::file_shrank`]), is a local error (451).
fn transfer_error(e: &io::Error, cancel: &Cancel) -> TransferError {
    if cancel.is_aborted() {
        return TransferError::Aborted;
    }
    let kind = fs::classify(e);
    if kind.is_out_of_room() {
        return TransferError::Fs(kind);
    }
    let peer_gone = matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ESHUTDOWN | libc::ETIMEDOUT)
    ) || matches!(
        e.kind(),
        io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WriteZero
            // TLS: an end without close_notify, or records that do not decrypt.
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::InvalidData
    );
    if peer_gone {
        TransferError::Aborted
    } else {
        TransferError::Local
    }
}

/// Moves the data on the plain paths: in clear, or with `kernel_tls` (plaintext that came
/// with the handshake) through the kernel's TLS, which adds close_notify at the ends.
async fn move_data(
    conn: &DataConn<'_>,
    mode: zerocopy::ZeroCopy,
    source: Source,
    cancel: &Cancel,
    kernel_tls: Option<Vec<u8>>,
) -> Result<u64, TransferError> {
    let moved = match source {
        Source::Retr { file, offset, len, ascii: false } => {
            zerocopy::send_file(conn, mode, &file, offset, len).await
        }
        Source::Retr { file, offset, len, ascii: true } => send_ascii(conn, &file, offset, len).await,
        Source::List(bytes, _charge) => {
            let n = bytes.len() as u64;
            sockets::send_all(conn.sock, bytes, conn.limits.stall_timeout).await.map(|_| n)
        }
        Source::Stor { target, offset, restore, ascii } => {
            let file = upload_file(&target)?;
            let got = match kernel_tls {
                Some(early) => ktls::recv_file(conn, &file, offset, early, ascii).await,
                None if ascii => recv_ascii(conn, &file, offset).await,
                None => zerocopy::recv_file(conn, &file, offset, None).await,
            };
            drop(file);
            return end_upload(got, target, restore, cancel);
        }
    };
    let moved = match (moved, kernel_tls) {
        (Ok(n), Some(_)) => ktls::finish_send(conn.sock, conn.limits.stall_timeout).await.map(|()| n),
        (moved, _) => moved,
    };
    sent(moved, cancel)
}

/// The outcome of a download or listing: a shut-down socket can end a loop "cleanly", so an
/// abort always wins.
fn sent(moved: io::Result<u64>, cancel: &Cancel) -> Result<u64, TransferError> {
    match moved {
        Ok(_) if cancel.is_aborted() => Err(TransferError::Aborted),
        Ok(n) => Ok(n),
        Err(e) => Err(transfer_error(&e, cancel)),
    }
}

/// The upload's file as a second descriptor (the target keeps its own for commit).
fn upload_file(target: &UploadTarget) -> Result<SharedFd, TransferError> {
    target.file.try_clone().map(Rc::new).map_err(|_| TransferError::Local)
}

/// Commits an upload that arrived whole, else gives it up (atomic/keep_partial rules).
fn end_upload(
    got: io::Result<u64>,
    target: UploadTarget,
    restore: Option<u64>,
    cancel: &Cancel,
) -> Result<u64, TransferError> {
    match got {
        Ok(n) if !cancel.is_aborted() => {
            target.commit().map_err(|e| TransferError::Fs(fs::classify(e)))?;
            Ok(n)
        }
        Ok(_) => {
            give_up(target, restore);
            Err(TransferError::Aborted)
        }
        Err(e) => {
            debug!(error = %e, "upload interrupted");
            give_up(target, restore);
            Err(transfer_error(&e, cancel))
        }
    }
}

/// PROT P: the same transfers through user-space TLS (see `tls`).
async fn move_data_tls(
    conn: &DataConn<'_>,
    stream: &mut DataStream,
    pool: &BufPool,
    source: Source,
    cancel: &Cancel,
) -> Result<u64, TransferError> {
    let moved = match source {
        Source::Retr { file, offset, len, ascii } => {
            tls::send_file(conn, stream, pool, &file, (offset, len), ascii).await
        }
        Source::List(bytes, _charge) => tls::send_bytes(conn, stream, &bytes).await,
        Source::Stor { target, offset, restore, ascii } => {
            let file = upload_file(&target)?;
            let got = tls::recv_file(conn, stream, pool, &file, offset, ascii).await;
            drop(file);
            return end_upload(got, target, restore, cancel);
        }
    };
    sent(moved, cancel)
}

/// Ends an upload that failed. An APPE to an existing file leaves it as it was: what it
/// wrote is cut off again, whatever `keep_partial` says, since the client was told the
/// append failed (and on a full disk those bytes hold the space). Other uploads follow
/// `atomic` and `keep_partial` ([`UploadTarget::abandon`]).
fn give_up(target: UploadTarget, restore: Option<u64>) {
    let Some(len) = restore else { return target.abandon() };
    // Shrinking a file never needs space, so this works on a full disk too.
    if let Err(e) = nix::unistd::ftruncate(&target.file, len as i64) {
        tracing::warn!(error = %e, len, "cannot cut a failed APPE back to the file's size before it");
    }
    // An append writes in place, never to a temporary file: committing keeps the name
    // (abandoning would remove the whole file without keep_partial).
    let _ = target.commit();
}

/// TYPE A download: `len` file bytes from `offset` with bare LF sent as CRLF (RFC 959
/// §3.1.1.1); as [`zerocopy::send_file`], a file that ends before `len` fails the transfer.
async fn send_ascii(conn: &DataConn<'_>, file: &SharedFd, offset: u64, len: u64) -> io::Result<u64> {
    let mut pace = Pacer::new(conn);
    let (mut buf, mut out) = (Vec::with_capacity(ASCII_CHUNK), Vec::with_capacity(2 * ASCII_CHUNK));
    let (mut pos, mut sent, mut prev_cr) = (offset, 0u64, false);
    let end = offset + len;
    while pos < end {
        if conn.abort.is_aborted() {
            return Err(zerocopy::aborted());
        }
        let (res, back) = ops::read_at(file, buf, pos).await;
        buf = back;
        if res? == 0 {
            return Err(zerocopy::file_shrank());
        }
        // Bytes the file gained since it was opened are not part of this transfer.
        buf.truncate((end - pos).min(buf.len() as u64) as usize);
        let n = buf.len() as u64;
        out.clear();
        to_crlf(&buf, &mut prev_cr, &mut out);
        let wire = out.len() as u64;
        out = sockets::send_all(conn.sock, out, conn.limits.stall_timeout).await?;
        sent += wire;
        pos += n;
        pace.account(wire).await;
    }
    Ok(sent)
}

/// TYPE A upload: CRLF arriving on the wire is stored as LF.
async fn recv_ascii(conn: &DataConn<'_>, file: &SharedFd, offset: u64) -> io::Result<u64> {
    let mut pace = Pacer::new(conn);
    let (mut buf, mut out) = (Vec::with_capacity(ASCII_CHUNK), Vec::with_capacity(ASCII_CHUNK + 1));
    let (mut pos, mut held_cr) = (offset, false);
    loop {
        if conn.abort.is_aborted() {
            return Err(zerocopy::aborted());
        }
        buf = sockets::recv_some(conn.sock, buf, conn.limits.stall_timeout).await?;
        let end = buf.is_empty();
        out.clear();
        from_crlf(&buf, &mut held_cr, &mut out);
        if end && held_cr {
            out.push(b'\r');
        }
        let n = out.len();
        let (res, back) = ops::write_all_at(file, out, 0..n, pos).await;
        out = back;
        res?;
        pos += n as u64;
        pace.account(n as u64).await;
        if end {
            return Ok(pos - offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_charged_to_the_budget_and_refused_past_it() {
        use crate::ftp::{ListFormat, VirtualPath};
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let kind = TransferKind::List {
            path: VirtualPath::root(),
            format: ListFormat::Names,
            hidden: false,
            glob: None,
        };
        let held = Arc::new(AtomicU64::new(0));
        let source = prepare(&root, &kind, true, true, &held).unwrap();
        assert!(matches!(&source, Source::List(text, _) if text == b"a\r\n"));
        assert_eq!(held.load(Ordering::Acquire), 3, "the listing holds its bytes");
        drop(source);
        assert_eq!(held.load(Ordering::Acquire), 0, "and returns them when done");
        held.store(LISTING_MEMORY_BYTES, Ordering::Release);
        assert!(matches!(prepare(&root, &kind, true, true, &held), Err(FsError::Busy)));
    }
}
