//! Start-up and shutdown of a serving process, in the order that keeps it safe: bind while
//! privileged and single-threaded, start the binder, drop privileges, then start workers
//! (which create their rings); afterwards wait for signals and worker exits.

use crate::binder;
use crate::config::{Config, CpuPinning};
use crate::fs::{self, Root, SweepBounds};
use crate::io::context::{Phase, Shared};
use crate::io::ftp::state::FtpShared;
use crate::io::tftp::resolve::Resolver;
use crate::io::tftp::state::TftpShared;
use crate::io::worker::{self, WorkerExit, WorkerSetup};
use crate::net::listen::{self, BindError, Listeners};
use crate::observe::metrics::Metrics;
use crate::observe::sessions::Snapshots;
use crate::observe::xferlog::Xferlog;
use crate::privs::{self, PrivError, ServiceUser, StartPrivilege};
use crate::reload::{LiveConfig, ReloadOutcome};
use nix::sys::signal::{SigSet, Signal};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Exit code when start-up fails (configuration, bind, privileges).
pub const EXIT_STARTUP: i32 = 1;
/// Exit code when a worker died.
pub const EXIT_WORKER_DIED: i32 = 70;

enum Event {
    Signal(Signal),
    Worker(WorkerExit),
}

/// Where the panic hook reports panics on worker threads. A panic inside a session task is
/// caught by the runtime and would otherwise go unnoticed; it is a bug, so we stop.
static PANICS: OnceLock<Mutex<mpsc::Sender<Event>>> = OnceLock::new();

fn install_panic_hook(events: mpsc::Sender<Event>) {
    let _ = PANICS.set(Mutex::new(events));
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        error!(thread = name, "panic: {info}");
        if let Some(id) = name.strip_prefix("ferry-w").and_then(|n| n.parse().ok()) {
            if let Some(tx) = PANICS.get().and_then(|m| m.lock().ok()) {
                let _ = tx.send(Event::Worker(WorkerExit { id, panic: Some(info.to_string()) }));
            }
        }
        default(info);
    }));
}

/// Re-reads every configuration layer (called on SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<Config, crate::config::ConfigError>>;

/// Why the server did not start: one variant per step of [`start`], each saying what it was
/// doing, so the one caller logs it the same way whatever failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Binding the FTP and TFTP listeners.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Opening the served root.
    #[error("cannot open the served root {}: {source}", .path.display())]
    Root { path: PathBuf, source: io::Error },
    /// Opening the xferlog.
    #[error("cannot open the xferlog {}: {source}", .path.display())]
    Xferlog { path: PathBuf, source: io::Error },
    /// Binding the metrics endpoint.
    #[error("cannot bind the metrics endpoint {listen}: {source}")]
    MetricsBind { listen: SocketAddr, source: io::Error },
    /// The FTP settings or an FTP account root.
    #[error("{0}")]
    FtpRoots(String),
    /// Opening the TFTP root or a TFTP client root.
    #[error("cannot open the TFTP root {}: {source}", .path.display())]
    TftpRoot { path: PathBuf, source: io::Error },
    /// Keeping CAP_NET_BIND_SERVICE for the binder across its exec.
    #[error("cannot pass CAP_NET_BIND_SERVICE to the binder: {0}")]
    BinderCapability(PrivError),
    /// Finding the binary to start the binder from.
    #[error("cannot find our own executable to start the binder: {0}")]
    OwnExecutable(io::Error),
    /// Starting the binder.
    #[error("cannot start the binder: {0}")]
    Binder(io::Error),
    /// Looking up the service user or dropping to it.
    #[error("cannot drop privileges: {0}")]
    PrivilegeDrop(PrivError),
    /// Blocking the handled signals before any thread starts.
    #[error("cannot block signals: {0}")]
    Signals(nix::Error),
    /// Starting the metrics endpoint's thread.
    #[error("cannot start the metrics endpoint: {0}")]
    Metrics(io::Error),
    /// Starting a worker thread.
    #[error("cannot start worker {id}: {source}")]
    Worker { id: usize, source: io::Error },
}

/// Runs the server until SIGTERM/SIGINT (exit 0) or a worker failure (non-zero).
pub fn run(config: Config, reloader: Reloader) -> i32 {
    match start(config, reloader) {
        Ok(running) => supervise(running),
        Err(e) => {
            error!("{e}");
            // Under journald the operator at the terminal still gets the reason.
            if !crate::observe::log::errors_reach_stderr() {
                eprintln!("ferry: {e}");
            }
            EXIT_STARTUP
        }
    }
}

/// A started server: what [`supervise`] holds until the end.
struct Running {
    events: mpsc::Receiver<Event>,
    workers: usize,
    shutdown: tokio::sync::watch::Sender<Phase>,
    wakers: Vec<OwnedFd>,
    shared: Arc<Shared>,
    reload: Reload,
}

/// Starts serving: binds while privileged and single-threaded, opens what the service user
/// may not reach, starts the binder, drops privileges, then starts the workers.
fn start(config: Config, reloader: Reloader) -> Result<Running, StartupError> {
    let start = StartPrivilege::detect();
    crate::fd_limit::raise(&config);
    crate::cpu_quota::warn_if_polling(&config);
    let workers = config.effective_workers();
    let listeners = listen::bind_all(&config, workers)?;
    let (ftp_served, tftp_served) = listeners.served();
    let root = Root::open(&config.root)
        .map_err(|source| StartupError::Root { path: config.root.clone(), source })?;
    let root = Arc::new(root);
    // Opened before the drop: the log directory and a low metrics port may need privilege.
    let xferlog = config
        .xferlog
        .enabled
        .then(|| Xferlog::open(&config.xferlog.path))
        .transpose()
        .map_err(|source| StartupError::Xferlog { path: config.xferlog.path.clone(), source })?;
    let metrics_listener = config
        .metrics
        .enabled
        .then(|| std::net::TcpListener::bind(config.metrics.listen))
        .transpose()
        .map_err(|source| StartupError::MetricsBind { listen: config.metrics.listen, source })?;
    // Every FTP account root is opened now, so the service user needs no search permission
    // on the directories above them.
    let ftp_state = config
        .ftp
        .enabled
        .then(|| FtpShared::open(&config, &root, workers))
        .transpose()
        .map_err(StartupError::FtpRoots)?
        .map(Arc::new);
    // TFTP may serve its own directory; opened now, while the path is still reachable.
    let tftp_root = match &config.tftp.root {
        Some(path) if config.tftp.enabled => {
            let r =
                Root::open(path).map_err(|source| StartupError::TftpRoot { path: path.clone(), source })?;
            Arc::new(r)
        }
        _ => Arc::clone(&root),
    };
    let client_roots = if config.tftp.enabled {
        Resolver::open_client_roots(&config.tftp)
            .map_err(|(path, source)| StartupError::TftpRoot { path, source })?
    } else {
        Default::default()
    };
    let mut binder_clients = start_binder(&config, start, workers)?;
    let user = match start {
        StartPrivilege::Root => ServiceUser::lookup(&config.user),
        _ => Ok(ServiceUser::current()),
    };
    if let (StartPrivilege::Root, Ok(u), Some(log)) = (start, &user, &xferlog) {
        if let Err(e) = log.give_root_owned_to(u.uid) {
            warn!(path = %config.xferlog.path.display(), "cannot hand the xferlog to the service user: {e}");
        }
    }
    user.and_then(|u| privs::drop_server(start, &u)).map_err(StartupError::PrivilegeDrop)?;
    sweep_upload_temps(&root, &tftp_root, ftp_state.as_deref());
    // Every thread started from here inherits this mask, so signals reach only `sigwait`.
    let signals = handled_signals();
    signals.thread_block().map_err(StartupError::Signals)?;
    let wakers = shutdown_handles(&listeners, config.tftp.single_port);
    let (events_tx, events) = mpsc::channel::<Event>();
    install_panic_hook(events_tx.clone());
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(Phase::Serving);
    let metrics = Arc::new(Metrics::new(workers));
    if config.ftp.enabled {
        metrics.set_passive_ports(config.ftp.passive.ports.len() as u64);
    }
    // One snapshot channel per worker; without the endpoint the senders drop and each
    // worker's answering task ends at once.
    let (snapshot_tx, mut snapshot_rx): (Vec<_>, std::collections::VecDeque<_>) =
        (0..workers).map(|_| tokio::sync::mpsc::channel(crate::observe::sessions::SNAPSHOT_QUEUE)).unzip();
    if let Some(listener) = metrics_listener {
        let snapshots = Snapshots::new(snapshot_tx);
        crate::observe::http::spawn(listener, Arc::clone(&metrics), snapshots)
            .map_err(StartupError::Metrics)?;
    }
    let tftp_state =
        Arc::new(TftpShared::new(&config, tftp_root, client_roots, Arc::clone(&metrics.tftp_cache_bytes)));
    let config = Arc::new(config);
    let live = LiveConfig::new(Arc::clone(&config));
    let shared = Arc::new(Shared { config, root, active: Default::default(), metrics, xferlog });
    let cpus = pinned_cpus(shared.config.cpu_pinning, usable_cpus(), online_cpus());
    if cpus.is_empty() {
        info!(cpu_pinning = ?shared.config.cpu_pinning, "workers not pinned: the scheduler places them");
    } else {
        info!(cpu_pinning = ?shared.config.cpu_pinning, ?cpus, "workers pinned, one to each of these CPUs");
    }
    let (exit_tx, exit_rx) = mpsc::channel::<WorkerExit>();
    let (running_tx, running_rx) = mpsc::channel::<usize>();
    let Listeners { ftp, ftps, tftp } = listeners;
    for (id, ((ftp, ftps), tftp)) in ftp.into_iter().zip(ftps).zip(tftp).enumerate() {
        let setup = WorkerSetup {
            id,
            cpu: (!cpus.is_empty()).then(|| cpus[id % cpus.len()]),
            ftp,
            ftps,
            tftp,
            binder: binder_clients.as_mut().and_then(|c| c.pop_front()),
            shared: Arc::clone(&shared),
            ftp_state: ftp_state.clone(),
            tftp_state: Arc::clone(&tftp_state),
            shutdown: shutdown_rx.clone(),
            live: live.subscribe(),
            running: running_tx.clone(),
            snapshots: snapshot_rx.pop_front().expect("one snapshot channel per worker"),
        };
        worker::spawn(setup, exit_tx.clone()).map_err(|source| StartupError::Worker { id, source })?;
    }
    drop(running_tx);
    wait_until_running(&running_rx, workers);
    forward(exit_rx, events_tx.clone(), Event::Worker);
    spawn_signal_thread(signals, events_tx);
    crate::observe::sdnotify::notify(&format!(
        "READY=1\nSTATUS=serving with {workers} workers\nMAINPID={}",
        std::process::id()
    ));
    // What is really bound: nothing for a disabled protocol, the v4 fallback when IPv6 is off.
    info!(workers, ftp = ?ftp_served, tftp = ?tftp_served, "ferry serving {}", shared.config.root.display());
    Ok(Running {
        events,
        workers,
        shutdown: shutdown_tx,
        wakers,
        shared,
        reload: Reload { live, reloader, ftp: ftp_state },
    })
}

/// Removes the temporary files of uploads a crash interrupted (kill -9, power loss) from every
/// served root: as the service user, and before any worker can start an upload. Those of
/// uploads running in another process on the same tree are locked, and left alone.
fn sweep_upload_temps(top: &Arc<Root>, tftp: &Arc<Root>, ftp: Option<&FtpShared>) {
    let accounts: Vec<Arc<Root>> = ftp
        .map(|f| {
            let s = &f.settings;
            let paths = s.anonymous.iter().map(|a| &a.root).chain(s.users.iter().map(|u| &u.root));
            paths.filter_map(|p| f.root(p)).collect()
        })
        .unwrap_or_default();
    let roots = [top, tftp].into_iter().chain(&accounts).map(|r| &**r);
    let report = fs::sweep_upload_temps(roots, SweepBounds::START);
    if report.removed > 0 || report.in_use > 0 {
        info!(
            removed = report.removed,
            in_use = report.in_use,
            "start-up sweep: temporary files of interrupted uploads removed"
        );
    }
    if report.cut_short {
        info!(
            entries = report.entries,
            "start-up sweep of upload temporary files stopped at its bounds; the rest are removed when listed, an hour after their last write"
        );
    }
}

/// Waits until every worker serves, so READY=1 (and the "serving" line) means what it says:
/// on a loaded host a pinned worker can take a second to get its CPU. A worker that dies
/// first ends the wait (its exit is handled by `supervise`); so does a long stall, with a
/// warning, since the listeners already queue connections.
fn wait_until_running(running: &mpsc::Receiver<usize>, workers: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for started in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if running.recv_timeout(left).is_err() {
            warn!(started, workers, "not every worker started; serving with those that did");
            return;
        }
    }
}

/// Starts the binder when there is a privileged data port to hand out.
fn start_binder(
    config: &Config,
    start: StartPrivilege,
    workers: usize,
) -> Result<Option<std::collections::VecDeque<binder::client::BinderClient>>, StartupError> {
    let port = config.ftp.active_source_port;
    if !config.ftp.enabled || port == 0 || port >= 1024 {
        return Ok(None);
    }
    if !start.can_bind_low_ports() {
        info!(port, "no privilege to bind the active-mode data port: active data connections come from ephemeral ports");
        return Ok(None);
    }
    if start == StartPrivilege::BindCapability {
        privs::pass_bind_cap_across_exec().map_err(StartupError::BinderCapability)?;
    }
    let exe = std::env::current_exe().map_err(StartupError::OwnExecutable)?;
    let b =
        binder::spawn::spawn(&exe, port, &config.user, workers, &config.log).map_err(StartupError::Binder)?;
    info!(pid = b.child.id(), port, "binder started");
    // The child is reaped by init when we exit; it exits when its channels close.
    std::mem::forget(b.child);
    Ok(Some(b.clients.into()))
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

fn spawn_signal_thread(set: SigSet, events: mpsc::Sender<Event>) {
    let _ = std::thread::Builder::new().name("ferry-signals".into()).spawn(move || loop {
        match set.wait() {
            Ok(sig) => {
                if events.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
            Err(e) => {
                error!("sigwait failed: {e}");
                return;
            }
        }
    });
}

fn forward<T: Send + 'static>(from: mpsc::Receiver<T>, to: mpsc::Sender<Event>, wrap: fn(T) -> Event) {
    let _ = std::thread::Builder::new().name("ferry-supervise".into()).spawn(move || {
        for item in from {
            if to.send(wrap(item)).is_err() {
                return;
            }
        }
    });
}

/// Duplicates of every listening socket, so shutdown(2) can wake the workers' pending
/// accept and receive operations (a dup shares the socket, so the worker's op ends).
/// The TFTP receive op reports such a wake-up as a datagram without a sender. Not TFTP
/// sockets in single-port mode: running transfers still receive and send through them while
/// they drain (shutdown(2) would fail their sends with EPIPE); their loops wake on the
/// shutdown phase instead.
fn shutdown_handles(listeners: &Listeners, tftp_single_port: bool) -> Vec<OwnedFd> {
    let ftp = listeners.ftp.iter().chain(&listeners.ftps).flatten().map(|l| l.as_fd().try_clone_to_owned());
    let tftp = listeners.tftp.iter().flatten().filter(|_| !tftp_single_port);
    ftp.chain(tftp.map(|s| s.as_fd().try_clone_to_owned())).filter_map(Result::ok).collect()
}

/// The CPUs workers are pinned to, in turn; empty when they are not pinned. `allowed` are
/// the CPUs this process may run on, `online` how many the host has.
fn pinned_cpus(mode: CpuPinning, allowed: Vec<usize>, online: usize) -> Vec<usize> {
    match mode {
        CpuPinning::On => allowed,
        CpuPinning::Off => Vec::new(),
        // Fewer CPUs allowed than online: a cpuset or affinity someone gave Ferry on purpose.
        CpuPinning::Auto if allowed.len() < online => allowed,
        CpuPinning::Auto => Vec::new(),
    }
}

/// CPUs online on the host (not only those this process may use).
fn online_cpus() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

fn usable_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else { return Vec::new() };
    (0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect()
}

/// What SIGHUP needs: the live configuration and a way to re-read the layers.
struct Reload {
    live: LiveConfig,
    reloader: Reloader,
    /// Holds the TLS certificate, which SIGHUP re-reads even when the configuration did not
    /// change (the files behind the same paths were rotated).
    ftp: Option<Arc<FtpShared>>,
}

impl Reload {
    /// Re-reads and applies the configuration; an invalid or restart-only change is
    /// refused with a log line and the running configuration stays.
    fn run(&self, metrics: &Metrics) {
        let new = match (self.reloader)() {
            Ok(c) => c,
            Err(e) => {
                warn!("SIGHUP: new configuration rejected, keeping the running one: {e}");
                return;
            }
        };
        let level = new.log.level.clone();
        let passive_ports = if new.ftp.enabled { new.ftp.passive.ports.len() as u64 } else { 0 };
        match self.live.offer(new) {
            ReloadOutcome::Applied => {
                metrics.set_passive_ports(passive_ports);
                if let Err(e) = crate::observe::log::set_level(&level) {
                    warn!("SIGHUP: cannot apply log.level: {e}");
                }
                info!("SIGHUP: configuration reloaded; new sessions and transfers use it");
            }
            ReloadOutcome::Unchanged => info!("SIGHUP: configuration unchanged"),
            ReloadOutcome::NeedsRestart(keys) => warn!(
                changed = ?keys,
                "SIGHUP: configuration NOT reloaded: these keys need a restart; keeping the running configuration"
            ),
        }
        if let Some(ftp) = &self.ftp {
            ftp.reload_tls(&self.live.current());
        }
    }
}

/// How long aborted transfers get to send their last words and be logged after the drain
/// timeout, before the process exits anyway.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// Waits for signals and worker exits: SIGHUP reloads, SIGTERM/SIGINT drain then cut the
/// transfers still running; returns the exit code.
fn supervise(started: Running) -> i32 {
    let Running { events, workers, shutdown, wakers, shared, reload } = started;
    let mut running = workers;
    let mut deadline: Option<Instant> = None;
    let mut cutting = false;
    loop {
        let event = match deadline {
            None => events.recv().ok(),
            Some(d) => match events.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(ev) => Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) if cutting => {
                    let left = shared.active.load(Ordering::Relaxed);
                    warn!(still_active = left, "transfers did not end after being aborted; exiting");
                    return 0;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Abort what still runs rather than vanish under it: FTP clients get 426
                    // and 421, TFTP clients an ERROR, and the xferlog an `i` line each.
                    let left = shared.active.load(Ordering::Relaxed);
                    warn!(still_active = left, "drain timeout reached; aborting the transfers still running");
                    let _ = shutdown.send(Phase::Cutting);
                    cutting = true;
                    deadline = Some(Instant::now() + CUT_GRACE);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        match event {
            None => return if deadline.is_some() { 0 } else { EXIT_WORKER_DIED },
            Some(Event::Signal(Signal::SIGHUP)) => {
                crate::observe::sdnotify::notify("RELOADING=1");
                reload.run(&shared.metrics);
                crate::observe::sdnotify::notify("READY=1");
                if let Some(log) = &shared.xferlog {
                    match log.reopen() {
                        Ok(()) => info!("SIGHUP: xferlog reopened"),
                        Err(e) => {
                            warn!("SIGHUP: cannot reopen the xferlog ({e}); still writing to the old file")
                        }
                    }
                }
            }
            Some(Event::Signal(sig)) => {
                if deadline.is_some() {
                    warn!(signal = %sig, "second signal during drain; exiting now");
                    return 0;
                }
                let drain = Duration::from_secs(shared.config.drain_timeout_secs);
                info!(signal = %sig, drain_secs = drain.as_secs(), active = shared.active.load(Ordering::Relaxed), "shutting down: no new connections, letting transfers finish");
                deadline = Some(Instant::now() + drain);
                crate::observe::sdnotify::notify("STOPPING=1\nSTATUS=draining transfers");
                let _ = shutdown.send(Phase::Draining);
                for fd in &wakers {
                    // SAFETY-free: shutdown(2) on a socket fd we own; errors (ENOTCONN on
                    // UDP) still wake the waiters, which is all we need.
                    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
                }
            }
            Some(Event::Worker(exit)) => {
                if let Some(msg) = exit.panic {
                    error!(worker = exit.id, "worker panicked: {msg}; stopping the server");
                    return EXIT_WORKER_DIED;
                }
                if deadline.is_none() {
                    error!(worker = exit.id, "worker stopped unexpectedly; stopping the server");
                    return EXIT_WORKER_DIED;
                }
                running -= 1;
                if running == 0 {
                    info!("all workers drained; bye");
                    return 0;
                }
            }
        }
    }
}
