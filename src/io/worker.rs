//! A worker: an OS thread pinned to one CPU running its own tokio-uring runtime, owning one
//! SO_REUSEPORT member of every listener. Nothing here is shared with other workers except
//! the read-only configuration, the shutdown signal, two atomic counters and the TFTP
//! per-IP rate limiter (a mutex taken once per request).

use crate::binder::client::BinderClient;
use crate::config::Config;
use crate::fs::Root;
use std::cell::Cell;
use std::net::{TcpListener, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// State every worker reads; written only at start-up (and by atomics and the rate mutex).
#[derive(Debug)]
pub struct Shared {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The top-level served root, opened before the privilege drop.
    pub root: Arc<Root>,
    /// Sessions and transfers running in all workers (drain waits for 0).
    pub active: AtomicUsize,
    /// Per-worker counters (each worker writes only its own block).
    pub metrics: Arc<crate::observe::metrics::Metrics>,
    /// The transfer log, when enabled.
    pub xferlog: Option<crate::observe::xferlog::Xferlog>,
    /// FTP settings, account roots and session counters; `None` when FTP is disabled.
    pub ftp: Option<Arc<super::ftp_state::FtpShared>>,
    /// The directory TFTP serves (`tftp.root`, else the top-level root), opened before the
    /// privilege drop.
    pub tftp_root: Arc<Root>,
    /// TFTP transfers running in all workers, checked against `tftp.max_transfers`.
    pub tftp_transfers: Arc<AtomicUsize>,
    /// TFTP request rate per client IP, for all workers: locked once per RRQ/WRQ (never per
    /// DATA or ACK), so the lock is short and rare next to the transfers it admits.
    pub tftp_rate: std::sync::Mutex<super::tftp_limits::RateLimiter>,
    /// Bytes of netascii-encoded files held by TFTP transfers in all workers, checked
    /// against `tftp.netascii_memory_bytes`.
    pub netascii_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// What a worker is started with.
pub struct WorkerSetup {
    /// Worker number, 0-based.
    pub id: usize,
    /// CPU to pin the thread to, when known.
    pub cpu: Option<usize>,
    /// This worker's FTP control listener members.
    pub ftp: Vec<TcpListener>,
    /// This worker's TFTP request socket members.
    pub tftp: Vec<UdpSocket>,
    /// This worker's channel to the port-20 binder, when there is one.
    pub binder: Option<BinderClient>,
    /// Read-only shared state.
    pub shared: Arc<Shared>,
    /// Leaves [`Phase::Serving`] when the server is shutting down.
    pub shutdown: watch::Receiver<Phase>,
    /// The configuration in force, replaced by SIGHUP reloads.
    pub live: watch::Receiver<Arc<Config>>,
    /// Told this worker's id once its ring runs and its listeners accept.
    pub running: Sender<usize>,
}

/// What a worker thread tells the main thread when it ends.
#[derive(Debug)]
pub struct WorkerExit {
    /// Which worker.
    pub id: usize,
    /// The panic message, if it panicked.
    pub panic: Option<String>,
}

/// Where the server is in its life; the main thread moves it forward, workers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// No new connections or requests; running sessions and transfers may finish.
    Draining,
    /// The drain timeout has passed: running transfers are aborted (FTP 426, TFTP ERROR) so
    /// clients hear why and the xferlog records them before the process exits.
    Cutting,
}

/// This worker's view of [`Phase::Cutting`]: a flag and a wake-up, both local to the worker
/// thread, so transfer loops can watch for it without touching shared state.
#[derive(Debug, Clone, Default)]
pub struct CutSignal {
    set: Rc<Cell<bool>>,
    notify: Rc<tokio::sync::Notify>,
}

impl CutSignal {
    /// Resolves once running transfers must stop (at once if they already must).
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.set.get() {
            return;
        }
        notified.await;
    }

    fn raise(&self) {
        self.set.set(true);
        self.notify.notify_waiters();
    }
}

/// Per-worker context handed to every session task on that worker.
pub struct WorkerContext {
    /// Worker number.
    pub id: usize,
    /// Read-only shared state.
    pub shared: Arc<Shared>,
    /// Channel to the binder for active-mode data sockets.
    pub binder: Option<BinderClient>,
    /// Shutdown signal.
    pub shutdown: watch::Receiver<Phase>,
    /// Raised when the drain timeout has passed.
    pub cut: CutSignal,
    /// The configuration in force (see [`WorkerContext::config`]).
    live: watch::Receiver<Arc<Config>>,
    /// Sessions and transfers running on this worker.
    local_active: Cell<usize>,
}

impl WorkerContext {
    /// The configuration in force now: read it when a session or transfer starts, and keep
    /// that copy for its whole life (a reload never changes a running transfer).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live.borrow())
    }

    /// True once shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() != Phase::Serving
    }

    /// Marks one session or transfer as running until the guard drops.
    pub fn activity(self: &Rc<Self>) -> ActivityGuard {
        self.local_active.set(self.local_active.get() + 1);
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        ActivityGuard { ctx: Rc::clone(self) }
    }

    /// Resolves when shutdown begins (at once if it already has).
    pub async fn wait_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|phase| *phase != Phase::Serving).await;
    }

    /// Raises `cut` when the server reaches [`Phase::Cutting`] (one task per worker).
    async fn relay_cut(self: Rc<Self>) {
        let mut rx = self.shutdown.clone();
        if rx.wait_for(|phase| *phase == Phase::Cutting).await.is_ok() {
            self.cut.raise();
        }
    }
}

/// Counts a running session or transfer; dropping it ends the count.
pub struct ActivityGuard {
    ctx: Rc<WorkerContext>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.ctx.local_active.set(self.ctx.local_active.get() - 1);
        self.ctx.shared.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the worker thread. Its end (normal or panic) is reported on `exits`.
pub fn spawn(setup: WorkerSetup, exits: Sender<WorkerExit>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let id = setup.id;
    std::thread::Builder::new().name(format!("ferry-w{id}")).spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(setup)));
        let panic = result.err().map(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into())
        });
        let _ = exits.send(WorkerExit { id, panic });
    })
}

/// Debug builds only: `DEBUG_FERRY_PANIC_WORKER=N` makes worker N panic inside a task
/// shortly after start, so tests can prove a worker panic stops the server. Compiled out
/// of release builds.
fn inject_test_panic(id: usize) {
    #[cfg(debug_assertions)]
    if std::env::var("DEBUG_FERRY_PANIC_WORKER").ok().and_then(|v| v.parse::<usize>().ok()) == Some(id) {
        tokio_uring::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            panic!("injected test panic in worker {id}");
        });
    }
    #[cfg(not(debug_assertions))]
    let _ = id;
}

/// Debug builds only: `DEBUG_FERRY_SLOW_WORKER=N` holds worker N back 500 ms before its ring
/// starts, as a busy pinned CPU can, so tests can prove READY waits for every worker.
fn delay_start_for_tests(id: usize) {
    #[cfg(debug_assertions)]
    if std::env::var("DEBUG_FERRY_SLOW_WORKER").ok().and_then(|v| v.parse::<usize>().ok()) == Some(id) {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    #[cfg(not(debug_assertions))]
    let _ = id;
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            warn!(cpu, "cannot pin worker to its CPU: {e}");
        }
    }
}

fn run(setup: WorkerSetup) {
    if let Some(cpu) = setup.cpu {
        pin(cpu);
    }
    let WorkerSetup { id, ftp, tftp, binder, shared, shutdown, live, running, .. } = setup;
    delay_start_for_tests(id);
    let cut = CutSignal::default();
    let ctx = Rc::new(WorkerContext { id, shared, binder, shutdown, cut, live, local_active: Cell::new(0) });
    // The ring is created here, after the privilege drop and on the thread that uses it.
    tokio_uring::builder().entries(1024).start(async move {
        let mut loops = Vec::new();
        tokio_uring::spawn(Rc::clone(&ctx).relay_cut());
        let ftp_worker = ctx
            .shared
            .ftp
            .as_ref()
            .map(|f| Rc::new(super::ftp_state::FtpWorker::new(Arc::clone(f), id, ctx.config())));
        for listener in ftp {
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            if let Some(w) = &ftp_worker {
                let accept = super::ftp_control::accept_loop(Rc::clone(&ctx), Rc::clone(w), listener);
                loops.push(tokio_uring::spawn(accept));
            }
        }
        if !tftp.is_empty() {
            loops.push(tokio_uring::spawn(super::tftp_udp::serve(Rc::clone(&ctx), tftp)));
        }
        info!(worker = id, "worker running");
        let _ = running.send(id);
        drop(running); // a worker that dies before this point ends the main thread's wait
        inject_test_panic(id);
        for l in loops {
            if let Err(e) = l.await {
                error!(worker = id, "listener task failed: {e}");
            }
        }
        // Listeners are closed; let running sessions and transfers finish. The main thread
        // enforces the drain timeout by exiting the process.
        while ctx.local_active.get() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        debug!(worker = id, "worker drained");
    });
}
