//! TFTP request sockets: the receive loop on each worker's UDP 69 member. Each request is
//! checked (repeat, rate, access, `max_transfers`), its file opened under the TFTP root and
//! handed to a transfer task on a fresh socket bound to the address the request came to.

use super::cache::FileKey;
use super::inbox::Routes;
use super::inlet::Inlet;
use super::limits::{LiveTransfers, TransferSlot};
use super::state::TftpShared;
use super::transfer::{Opened, Port, Start};
use crate::config::Config;
use crate::fs::{self, WriteMode};
use crate::io::context::WorkerContext;
use crate::io::registry::{Activity, Entry};
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::ops::SharedFd;
use crate::io::ring::udp_msg::{self, Received};
use crate::observe::metrics::Metric;
use crate::tftp::request::{check_overwrite, is_data_or_ack, is_request};
use crate::tftp::{plan, AccessPolicy, Direction, ErrorCode, Refusal, Request, ServerCaps, TransferSettings};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info_span, warn, Instrument};

/// Request buffer: RFC 2347 caps a request at 512 bytes; a longer one is cut and refused.
const REQUEST_BUF: usize = 1024;

/// TFTP state one worker shares between its request sockets.
struct TftpWorker {
    ctx: Rc<WorkerContext>,
    state: Arc<TftpShared>,
    /// Rules from the configuration last seen; rebuilt when a reload replaces it.
    rules: RefCell<Rc<Rules>>,
    pool: Rc<BufPool>,
    live: Rc<LiveTransfers>,
}

/// What requests are judged by, built from one configuration.
struct Rules {
    config: Arc<Config>,
    policy: AccessPolicy,
    caps: ServerCaps,
    settings: TransferSettings,
}

impl Rules {
    fn new(config: Arc<Config>) -> Rules {
        let cfg = &config.tftp;
        let (policy, caps, settings) =
            (AccessPolicy::from(cfg), ServerCaps::from(cfg), TransferSettings::from(cfg));
        Rules { policy, caps, settings, config }
    }
}

/// Requests taken without waiting after each ring receive (bounded, so the other tasks of
/// the worker still run during a storm).
const DRAIN_BATCH: usize = 64;

/// Serves every TFTP request socket of this worker until shutdown.
pub async fn serve(ctx: Rc<WorkerContext>, state: Arc<TftpShared>, sockets: Vec<UdpSocket>) {
    let config = ctx.config();
    let cfg = &config.tftp;
    // Header + largest block + one spare byte, so an oversized DATA is seen as such.
    // (`tftp.max_blksize` is restart-only, so this size holds for the process's life.)
    // At least a request's room plus one, as request sockets receive into these buffers too.
    let buf_len =
        (crate::tftp::wire::DATA_HEADER_LEN + usize::from(cfg.max_blksize) + 1).max(REQUEST_BUF + 1);
    let idle = (8 << 20) / buf_len;
    let pool = Rc::new(BufPool::new(buf_len, idle.max(64)));
    let worker = Rc::new(TftpWorker {
        rules: RefCell::new(Rc::new(Rules::new(Arc::clone(&config)))),
        pool,
        live: Rc::new(LiveTransfers::default()),
        ctx: Rc::clone(&ctx),
        state,
    });
    let loops: Vec<_> =
        sockets.into_iter().map(|s| tokio_uring::spawn(request_loop(Rc::clone(&worker), s))).collect();
    for l in loops {
        let _ = l.await;
    }
}

/// One request socket of this worker and, in single-port mode, the transfers it carries.
struct RequestPort {
    sock: SharedFd,
    /// The address it is bound to (a wildcard on a dual-stack or any-address listener).
    bound: Option<SocketAddr>,
    /// Single-port mode (`tftp.single_port`, restart-only): transfers reply from this socket
    /// and their datagrams are routed here by client address.
    single: bool,
    routes: Rc<Routes>,
    /// ERROR 5 answers to DATA/ACK from clients without a transfer, this second.
    strays: Cell<(Instant, u32)>,
}

/// ERROR 5 answers a single-port socket sends per second to DATA/ACK of unknown clients: a
/// client whose transfer ended learns it, while a spoofed flood cannot turn the port into a
/// reflector (the answer is longer than an ACK).
const STRAY_ANSWERS_PER_SECOND: u32 = 50;

impl RequestPort {
    /// True while this second's budget of ERROR 5 answers lasts.
    fn may_answer_stray(&self, now: Instant) -> bool {
        let (start, used) = self.strays.get();
        let (start, used) = if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            (now, 0)
        } else {
            (start, used)
        };
        self.strays.set((start, used.saturating_add(1)));
        used < STRAY_ANSWERS_PER_SECOND
    }
}

/// How often a draining single-port socket looks whether its last transfer has ended.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

/// Receives requests until shutdown, which wakes the pending receive (so does shutdown(2) on
/// a per-transfer-ports socket). A single-port socket then takes no more requests but keeps
/// carrying its running transfers' datagrams (their replies leave from it too) until the
/// last has ended.
async fn request_loop(worker: Rc<TftpWorker>, socket: UdpSocket) {
    let port = RequestPort {
        bound: socket.local_addr().ok(),
        sock: Rc::new(OwnedFd::from(socket)),
        single: worker.ctx.config().tftp.single_port,
        routes: Rc::default(),
        strays: Cell::new((Instant::now(), 0)),
    };
    // Pool-sized buffers (at least a request's room): in single-port mode a transfer's DATA
    // arrives here too and is routed in the buffer it was received into.
    let mut inlet = Inlet::own(Rc::clone(&port.sock));
    let pool = &worker.pool;
    loop {
        let draining = worker.ctx.shutting_down();
        if draining && port.routes.is_empty() {
            break;
        }
        let (res, buf) = tokio::select! {
            biased;
            _ = worker.ctx.wait_shutdown(), if !draining => continue,
            d = inlet.next(pool) => d,
            _ = tokio::time::sleep(DRAIN_CHECK), if draining => continue,
        };
        match res {
            Ok(r @ Received { from: Some(_), .. }) => {
                worker.on_datagram(&port, r, buf).await;
                // A boot storm queues requests faster than one wake-up each: take whatever
                // else is already waiting before waiting again.
                for _ in 0..DRAIN_BATCH {
                    match inlet.try_next(pool) {
                        Some((Ok(r @ Received { from: Some(_), .. }), buf)) => {
                            worker.on_datagram(&port, r, buf).await
                        }
                        Some((_, buf)) => pool.give(buf),
                        None => break,
                    }
                }
            }
            // Woken without a datagram, or a transient error: do not spin on it.
            Ok(_) => {
                pool.give(buf);
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => {
                pool.give(buf);
                debug!(worker = worker.ctx.id, "TFTP receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    inlet.close(pool).await;
    debug!(worker = worker.ctx.id, "TFTP socket closed");
}

/// IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d; handle them as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl TftpWorker {
    /// The rules for a request arriving now: a reload applies to requests after it.
    fn rules(&self) -> Rc<Rules> {
        let config = self.ctx.config();
        let mut current = self.rules.borrow_mut();
        if !Arc::ptr_eq(&current.config, &config) {
            self.state.rate().set_rate(config.tftp.requests_per_second_per_ip);
            *current = Rc::new(Rules::new(config));
        }
        Rc::clone(&current)
    }

    /// Handles one datagram of a request socket; its buffer goes back to the pool unless a
    /// single-port transfer's inbox keeps it.
    async fn on_datagram(&self, port: &RequestPort, r: Received, buf: Vec<u8>) {
        let Some(from) = r.from else { return self.pool.give(buf) };
        let peer = canonical(from);
        if port.single && !is_request(&buf) {
            // Single-port mode: DATA, ACK and ERROR of a running transfer come here.
            if let Some(inbox) = port.routes.get(&peer) {
                let ends = crate::tftp::request::must_not_answer(&buf);
                let r = Received { from: Some(peer), ..r };
                if let Some(refused) = inbox.push((Ok(r), buf)) {
                    self.pool.give(refused);
                }
                if ends {
                    // A client's ERROR ends its transfer: let the transfer take it now, so a
                    // request from that port right behind it (a UEFI size probe's real
                    // request) is new, not a repeat, as when the ERROR goes to a port of its own.
                    tokio::task::yield_now().await;
                }
                return;
            }
            if is_data_or_ack(&buf) {
                // RFC 1350 §4: a packet for no known transfer gets ERROR 5; never an ERROR
                // in answer to an ERROR, and only as many per second as the budget allows.
                if port.may_answer_stray(Instant::now()) {
                    let local = r.local.map(|l| l.0.to_canonical());
                    let reply = Refusal::new(ErrorCode::UnknownTransferId, "unknown transfer ID").datagram();
                    let _ = udp_msg::send_one(&port.sock, from, local, reply.as_bytes().to_vec()).await;
                }
                return self.pool.give(buf);
            }
        }
        // Shutting down: no new transfers (the running ones still get their datagrams above).
        if !self.ctx.shutting_down() {
            self.on_request(port, r, &buf).await;
        }
        self.pool.give(buf);
    }

    async fn on_request(&self, port: &RequestPort, r: Received, bytes: &[u8]) {
        let (sock, bound) = (&port.sock, port.bound);
        let Some(from) = r.from else { return };
        let peer = canonical(from);
        // tftp-hpa, for one, sends a last ACK or ERROR to port 69 after a refusal.
        if crate::tftp::request::must_not_answer(bytes) {
            debug!(%peer, "ERROR packet on the request port ignored");
            return;
        }
        // Every worker's member of the port got its own copy of a broadcast request: one
        // worker, the same for a given client in all of them, answers it.
        if r.broadcast && !self.answers_broadcast_from(peer) {
            debug!(%peer, "broadcast request left to another worker");
            return;
        }
        // Replies leave from the address the request was sent to (multi-homed hosts).
        let local = r
            .local
            .map(|(ip, ifindex)| (ip.to_canonical(), ifindex))
            .or_else(|| bound.filter(|b| !b.ip().is_unspecified()).map(|b| (b.ip().to_canonical(), 0)));
        let span = info_span!("tftp", client = %peer, worker = self.ctx.id);
        let result = self.admit(port, peer, local, r, bytes);
        match result {
            Ok(Some(start)) => {
                tokio_uring::spawn(start.instrument(span));
            }
            Ok(None) => {}
            Err(refusal) => {
                let _enter = span.enter();
                self.ctx.shared.metrics.worker(self.ctx.id).inc(Metric::TftpRequestsRefused);
                debug!(code = ?refusal.code, message = refusal.message, "request refused");
                let reply = refusal.datagram().as_bytes().to_vec();
                if let Err(e) = udp_msg::send_one(sock, from, local.map(|l| l.0), reply).await {
                    debug!("cannot send refusal: {e}");
                }
            }
        }
    }

    fn count(&self, m: Metric) {
        self.ctx.shared.metrics.worker(self.ctx.id).inc(m);
    }

    /// True when this worker is the one that answers a broadcast request from `peer`.
    fn answers_broadcast_from(&self, peer: SocketAddr) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        // A hasher with fixed keys, so every worker computes the same number.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(peer);
        let workers = self.ctx.shared.config.effective_workers().max(1) as u64;
        hash % workers == self.ctx.id as u64
    }

    /// Decides about one request; `Ok(None)` means ignore it silently.
    fn admit(
        &self,
        port: &RequestPort,
        peer: SocketAddr,
        local: Option<(IpAddr, u32)>,
        r: Received,
        bytes: &[u8],
    ) -> Result<Option<impl std::future::Future<Output = ()>>, Refusal> {
        if self.live.contains(&peer) {
            // RFC 1350 clients repeat a request whose answer was lost; the transfer already
            // running for this TID answers through its own timer.
            debug!(%peer, "repeated request for a running transfer ignored");
            return Ok(None);
        }
        if !self.state.rate().allow(peer.ip(), Instant::now()) {
            self.count(Metric::TftpRefusedRate);
            return Err(Refusal::busy());
        }
        if r.truncated || r.len > REQUEST_BUF {
            return Err(Refusal::new(ErrorCode::IllegalOperation, crate::tftp::request::REQUEST_TOO_LONG));
        }
        let rules = self.rules();
        let request = plan(peer.ip(), bytes, &rules.policy)?;
        let (root, request) = self.state.resolver.resolve(peer.ip(), request, &rules.config.tftp)?;
        let cfg = &rules.config.tftp;
        let slot = TransferSlot::acquire(&self.state.transfers, cfg.max_transfers).ok_or_else(|| {
            self.count(Metric::TftpRefusedTransfers);
            Refusal::busy()
        })?;
        let opened = self.open(&root, &request, &rules.policy)?;
        let Some((local_ip, ifindex)) = local else {
            warn!(%peer, "request without a destination address; cannot answer from the right address");
            return Err(Refusal::internal());
        };
        // A broadcast request keeps a socket of its own even in single-port mode: the
        // client's unicast ACKs may reach another worker's member of the request port.
        let own = if port.single && !r.broadcast {
            None
        } else {
            let sock = super::socket::bind_transfer(
                udp_msg::with_scope(local_ip, 0, ifindex),
                cfg.transfer_ports.as_ref(),
            )
            .map_err(|e| {
                warn!(%peer, "cannot bind a transfer socket: {e}");
                Refusal::new(ErrorCode::NotDefined, "no transfer port available")
            })?;
            Some(sock)
        };
        let Some(tid) = self.live.register(peer) else { return Ok(None) };
        let port = match own {
            Some(sock) => Port::Own(sock),
            None => {
                Port::Shared { sock: Rc::clone(&port.sock), route: port.routes.open(peer), from: local_ip }
            }
        };
        let activity = self.ctx.activity();
        let acknowledged = Rc::new(Cell::new(0));
        let kind = if request.direction == Direction::Read { "RRQ" } else { "WRQ" };
        let file = format!("/{}", request.path.display());
        let shown = Activity::new(kind, file, Rc::clone(&acknowledged));
        let seen = self.ctx.sessions.add(Entry::new("tftp", peer, Some(shown)));
        let start = Start {
            acknowledged,
            peer,
            tid,
            request,
            opened,
            port,
            caps: rules.caps,
            settings: rules.settings,
            shared: Arc::clone(&self.ctx.shared),
            netascii_bytes: Arc::clone(&self.state.netascii_bytes),
            worker: self.ctx.id,
            netascii_max: cfg.netascii_max_bytes,
            netascii_memory: cfg.netascii_memory_bytes,
            pool: Rc::clone(&self.pool),
            cut: self.ctx.cut.clone(),
            cache: Arc::clone(&self.state.cache),
            busy_poll: Duration::from_micros(cfg.busy_poll_us.into()),
        };
        Ok(Some(async move {
            // Held until the transfer ends: the global count and the drain count (the TID
            // entry goes with `start`, given up when the outcome is settled), and the entry
            // in the live view.
            let _guards = (slot, activity, seen);
            super::transfer::run(start).await;
        }))
    }

    /// Opens the file under its resolved root: for reading, or as an atomic upload.
    fn open(&self, root: &fs::Root, request: &Request, policy: &AccessPolicy) -> Result<Opened, Refusal> {
        let path = request.path.as_path();
        match request.direction {
            Direction::Read => {
                let (file, meta) = root.open_read(path).map_err(open_refusal)?;
                // io_uring reads must wait for the disk, not fail with EAGAIN.
                clear_nonblock(&file);
                Ok(Opened::Read { file, key: FileKey::from_metadata(&meta) })
            }
            Direction::Write => {
                let exists = root.stat(path).is_ok();
                check_overwrite(exists, policy)?;
                // Create-only unless overwrite is on: a file that appears during the upload
                // is then kept (the commit fails with EEXIST, ERROR 6).
                let mode =
                    if exists || policy.overwrite { WriteMode::Truncate } else { WriteMode::CreateNew };
                // Atomic: the bytes go to a hidden temporary name, renamed on completion.
                let target = root.open_upload(path, mode, true, false).map_err(open_refusal)?;
                Ok(Opened::Write { target })
            }
        }
    }
}

fn clear_nonblock(file: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(bits) = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(bits) - OFlag::O_NONBLOCK;
        let _ = fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

/// The ERROR for a failed open.
fn open_refusal(e: io::Error) -> Refusal {
    Refusal::for_file(fs::classify(e), "cannot open file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_map_to_rfc_1350_codes() {
        let refusal = |errno| open_refusal(io::Error::from_raw_os_error(errno));
        assert_eq!(refusal(libc::ENOENT), Refusal::new(ErrorCode::FileNotFound, "file not found"));
        assert_eq!(refusal(libc::EXDEV), Refusal::new(ErrorCode::AccessViolation, "access violation"));
        assert_eq!(refusal(libc::ELOOP), Refusal::new(ErrorCode::AccessViolation, "access violation"));
        let full = Refusal::new(ErrorCode::DiskFull, "disk full or allocation exceeded");
        assert_eq!(refusal(libc::EFBIG), full, "EFBIG at open, as on write");
        assert_eq!(refusal(libc::EEXIST), Refusal::new(ErrorCode::FileExists, "file already exists"));
        assert_eq!(refusal(libc::EMFILE), Refusal::busy());
        assert_eq!(refusal(libc::ENFILE), Refusal::busy());
        assert_eq!(refusal(libc::EIO), Refusal::new(ErrorCode::NotDefined, "cannot open file"));
    }
}
