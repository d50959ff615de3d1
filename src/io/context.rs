//! What every io driver on a worker reads: the protocol-free [`Shared`] state (configuration,
//! served root, activity count, metrics, xferlog), the shutdown [`Phase`], and the per-worker
//! [`WorkerContext`] with its cut signal. A leaf: it imports no driver and no protocol.

use crate::binder::client::BinderClient;
use crate::config::Config;
use crate::fs::Root;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// State every worker reads whatever the protocol; written only at start-up (and by atomics).
/// Each protocol's own shared state (`io::ftp::state::FtpShared`, `io::tftp::state::TftpShared`)
/// lives in its folder and reaches its drivers through the worker.
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

    /// True once running transfers must stop.
    pub fn is_raised(&self) -> bool {
        self.set.get()
    }

    pub(crate) fn raise(&self) {
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
    /// What runs on this worker now, for the live session view.
    pub sessions: Rc<super::registry::Registry>,
    /// The configuration in force (see [`WorkerContext::config`]).
    live: watch::Receiver<Arc<Config>>,
    /// Sessions and transfers running on this worker.
    local_active: Cell<usize>,
}

impl WorkerContext {
    /// The context of worker `id`, with nothing running yet.
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        binder: Option<BinderClient>,
        shutdown: watch::Receiver<Phase>,
        live: watch::Receiver<Arc<Config>>,
    ) -> WorkerContext {
        WorkerContext {
            id,
            shared,
            binder,
            shutdown,
            cut: CutSignal::default(),
            sessions: Default::default(),
            live,
            local_active: Cell::new(0),
        }
    }

    /// Sessions and transfers running on this worker now.
    pub fn local_active(&self) -> usize {
        self.local_active.get()
    }

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
    pub(crate) async fn relay_cut(self: Rc<Self>) {
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
