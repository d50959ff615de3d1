//! A worker: an OS thread (pinned to one CPU when `cpu_pinning` says so) running its own
//! tokio-uring runtime, owning one SO_REUSEPORT member of every listener. Nothing here is shared with other workers except
//! the read-only configuration, the shutdown signal, two atomic counters and the TFTP
//! per-IP rate limiter (a mutex taken once per request). The one file that starts both
//! protocols' drivers.

use super::context::{Phase, Shared, WorkerContext};
use super::ftp::state::{FtpShared, FtpWorker};
use super::tftp::state::TftpShared;
use crate::binder::client::BinderClient;
use crate::config::Config;
use crate::observe::sessions::SnapshotRequest;
use std::net::{TcpListener, UdpSocket};
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// What a worker is started with.
pub struct WorkerSetup {
    /// Worker number, 0-based.
    pub id: usize,
    /// CPU to pin the thread to, when known.
    pub cpu: Option<usize>,
    /// This worker's FTP control listener members.
    pub ftp: Vec<TcpListener>,
    /// This worker's implicit-TLS FTP listener members.
    pub ftps: Vec<TcpListener>,
    /// This worker's TFTP request socket members.
    pub tftp: Vec<UdpSocket>,
    /// This worker's channel to the port-20 binder, when there is one.
    pub binder: Option<BinderClient>,
    /// Read-only shared state.
    pub shared: Arc<Shared>,
    /// FTP state every worker reads; `None` when FTP is disabled.
    pub ftp_state: Option<Arc<FtpShared>>,
    /// TFTP state every worker reads.
    pub tftp_state: Arc<TftpShared>,
    /// Leaves [`Phase::Serving`] when the server is shutting down.
    pub shutdown: watch::Receiver<Phase>,
    /// The configuration in force, replaced by SIGHUP reloads.
    pub live: watch::Receiver<Arc<Config>>,
    /// Told this worker's id once its ring runs and its listeners accept.
    pub running: Sender<usize>,
    /// Snapshot requests of the live session view, from the metrics thread.
    pub snapshots: tokio::sync::mpsc::Receiver<SnapshotRequest>,
}

/// What a worker thread tells the main thread when it ends.
#[derive(Debug)]
pub struct WorkerExit {
    /// Which worker.
    pub id: usize,
    /// The panic message, if it panicked.
    pub panic: Option<String>,
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
    let WorkerSetup {
        id,
        ftp,
        ftps,
        tftp,
        binder,
        shared,
        ftp_state,
        tftp_state,
        shutdown,
        live,
        running,
        snapshots,
        ..
    } = setup;
    delay_start_for_tests(id);
    let ctx = Rc::new(WorkerContext::new(id, shared, binder, shutdown, live));
    // The ring is created here, after the privilege drop and on the thread that uses it.
    tokio_uring::builder().entries(1024).start(async move {
        let mut loops = Vec::new();
        tokio_uring::spawn(Rc::clone(&ctx).relay_cut());
        tokio_uring::spawn(super::registry::answer(Rc::clone(&ctx.sessions), id, snapshots));
        let ftp_worker = ftp_state.map(|f| Rc::new(FtpWorker::new(f, id, ctx.config())));
        let implicit = ftp.into_iter().map(|l| (l, false)).chain(ftps.into_iter().map(|l| (l, true)));
        for (listener, implicit) in implicit {
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            if let Some(w) = &ftp_worker {
                let accept =
                    super::ftp::control::accept_loop(Rc::clone(&ctx), Rc::clone(w), listener, implicit);
                loops.push(tokio_uring::spawn(accept));
            }
        }
        if !tftp.is_empty() {
            loops.push(tokio_uring::spawn(super::tftp::requests::serve(Rc::clone(&ctx), tftp_state, tftp)));
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
        while ctx.local_active() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        debug!(worker = id, "worker drained");
    });
}
