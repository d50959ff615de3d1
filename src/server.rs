//! Start-up and shutdown of a serving process, in the order that keeps it safe: bind while
//! privileged and single-threaded, start the binder, drop privileges, then start workers
//! (which create their rings); afterwards wait for signals and worker exits.

use crate::binder;
use crate::config::Config;
use crate::fs::Root;
use crate::io::context::{Phase, Shared};
use crate::io::ftp::state::FtpShared;
use crate::io::tftp::state::TftpShared;
use crate::io::worker::{self, WorkerExit, WorkerSetup};
use crate::net::listen::{self, Listeners};
use crate::observe::metrics::Metrics;
use crate::observe::xferlog::Xferlog;
use crate::privs::{self, ServiceUser, StartPrivilege};
use crate::reload::{LiveConfig, ReloadOutcome};
use nix::sys::signal::{SigSet, Signal};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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

/// Runs the server until SIGTERM/SIGINT (exit 0) or a worker failure (non-zero).
pub fn run(config: Config, reloader: Reloader) -> i32 {
    let start = StartPrivilege::detect();
    let workers = config.effective_workers();
    let listeners = match listen::bind_all(&config, workers) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            // Under journald the operator at the terminal still gets the reason.
            if !crate::observe::log::errors_reach_stderr() {
                eprintln!("ferry: {e}");
            }
            return EXIT_STARTUP;
        }
    };
    let root = match Root::open(&config.root) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            error!(root = %config.root.display(), "cannot open the served root: {e}");
            return EXIT_STARTUP;
        }
    };
    // Opened before the drop: the log directory and a low metrics port may need privilege.
    let xferlog = match config.xferlog.enabled.then(|| Xferlog::open(&config.xferlog.path)).transpose() {
        Ok(x) => x,
        Err(e) => {
            error!(path = %config.xferlog.path.display(), "cannot open the xferlog: {e}");
            return EXIT_STARTUP;
        }
    };
    let metrics_listener = match config
        .metrics
        .enabled
        .then(|| std::net::TcpListener::bind(config.metrics.listen))
        .transpose()
    {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %config.metrics.listen, "cannot bind the metrics endpoint: {e}");
            return EXIT_STARTUP;
        }
    };
    // Every FTP account root is opened now, so the service user needs no search permission
    // on the directories above them.
    let ftp_state = match config.ftp.enabled.then(|| FtpShared::open(&config, &root, workers)).transpose() {
        Ok(f) => f.map(Arc::new),
        Err(e) => {
            error!("{e}");
            return EXIT_STARTUP;
        }
    };
    // TFTP may serve its own directory; opened now, while the path is still reachable.
    let tftp_root = match &config.tftp.root {
        Some(path) if config.tftp.enabled => match Root::open(path) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                error!(root = %path.display(), "cannot open the TFTP root: {e}");
                return EXIT_STARTUP;
            }
        },
        _ => Arc::clone(&root),
    };
    let mut binder_clients = match start_binder(&config, start, workers) {
        Ok(clients) => clients,
        Err(code) => return code,
    };
    let user = match start {
        StartPrivilege::Root => ServiceUser::lookup(&config.user),
        _ => Ok(ServiceUser::current()),
    };
    if let (StartPrivilege::Root, Ok(u), Some(log)) = (start, &user, &xferlog) {
        if let Err(e) = log.give_root_owned_to(u.uid) {
            warn!(path = %config.xferlog.path.display(), "cannot hand the xferlog to the service user: {e}");
        }
    }
    if let Err(e) = user.and_then(|u| privs::drop_server(start, &u)) {
        error!("cannot drop privileges: {e}");
        return EXIT_STARTUP;
    }
    // Every thread started from here inherits this mask, so signals reach only `sigwait`.
    let signals = handled_signals();
    if let Err(e) = signals.thread_block() {
        error!("cannot block signals: {e}");
        return EXIT_STARTUP;
    }
    let wakers = shutdown_handles(&listeners);
    let (events_tx, events) = mpsc::channel::<Event>();
    install_panic_hook(events_tx.clone());
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(Phase::Serving);
    let metrics = Arc::new(Metrics::new(workers));
    if let Some(listener) = metrics_listener {
        if let Err(e) = crate::observe::http::spawn(listener, Arc::clone(&metrics)) {
            error!("cannot start the metrics endpoint: {e}");
            return EXIT_STARTUP;
        }
    }
    let tftp_state = Arc::new(TftpShared::new(&config, tftp_root));
    let config = Arc::new(config);
    let live = LiveConfig::new(Arc::clone(&config));
    let shared = Arc::new(Shared { config, root, active: Default::default(), metrics, xferlog });
    let cpus = usable_cpus();
    let (exit_tx, exit_rx) = mpsc::channel::<WorkerExit>();
    let (running_tx, running_rx) = mpsc::channel::<usize>();
    let Listeners { ftp, tftp } = listeners;
    for (id, (ftp, tftp)) in ftp.into_iter().zip(tftp).enumerate() {
        let setup = WorkerSetup {
            id,
            cpu: (!cpus.is_empty()).then(|| cpus[id % cpus.len()]),
            ftp,
            tftp,
            binder: binder_clients.as_mut().and_then(|c| c.pop_front()),
            shared: Arc::clone(&shared),
            ftp_state: ftp_state.clone(),
            tftp_state: Arc::clone(&tftp_state),
            shutdown: shutdown_rx.clone(),
            live: live.subscribe(),
            running: running_tx.clone(),
        };
        if let Err(e) = worker::spawn(setup, exit_tx.clone()) {
            error!("cannot start worker {id}: {e}");
            return EXIT_STARTUP;
        }
    }
    drop(running_tx);
    wait_until_running(&running_rx, workers);
    forward(exit_rx, events_tx.clone(), Event::Worker);
    spawn_signal_thread(signals, events_tx);
    crate::observe::sdnotify::notify(&format!(
        "READY=1\nSTATUS=serving with {workers} workers\nMAINPID={}",
        std::process::id()
    ));
    info!(workers, ftp = ?shared.config.ftp.listen, tftp = ?shared.config.tftp.listen, "ferry serving {}", shared.config.root.display());
    supervise(events, workers, &shutdown_tx, &wakers, &shared, &Reload { live, reloader })
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
) -> Result<Option<std::collections::VecDeque<binder::client::BinderClient>>, i32> {
    let port = config.ftp.active_source_port;
    if !config.ftp.enabled || port == 0 || port >= 1024 {
        return Ok(None);
    }
    if !start.can_bind_low_ports() {
        info!(port, "no privilege to bind the active-mode data port: active data connections come from ephemeral ports");
        return Ok(None);
    }
    if start == StartPrivilege::BindCapability {
        if let Err(e) = privs::pass_bind_cap_across_exec() {
            error!("cannot pass CAP_NET_BIND_SERVICE to the binder: {e}");
            return Err(EXIT_STARTUP);
        }
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            error!("cannot find our own executable to start the binder: {e}");
            return Err(EXIT_STARTUP);
        }
    };
    match binder::spawn::spawn(&exe, port, &config.user, workers, &config.log) {
        Ok(b) => {
            info!(pid = b.child.id(), port, "binder started");
            // The child is reaped by init when we exit; it exits when its channels close.
            std::mem::forget(b.child);
            Ok(Some(b.clients.into()))
        }
        Err(e) => {
            error!("cannot start the binder: {e}");
            Err(EXIT_STARTUP)
        }
    }
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
/// The TFTP receive op reports such a wake-up as a datagram without a sender.
fn shutdown_handles(listeners: &Listeners) -> Vec<OwnedFd> {
    let ftp = listeners.ftp.iter().flatten().map(|l| l.as_fd().try_clone_to_owned());
    let tftp = listeners.tftp.iter().flatten().map(|s| s.as_fd().try_clone_to_owned());
    ftp.chain(tftp).filter_map(Result::ok).collect()
}

fn usable_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else { return Vec::new() };
    (0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect()
}

/// What SIGHUP needs: the live configuration and a way to re-read the layers.
struct Reload {
    live: LiveConfig,
    reloader: Reloader,
}

impl Reload {
    /// Re-reads and applies the configuration; an invalid or restart-only change is
    /// refused with a log line and the running configuration stays.
    fn run(&self) {
        let new = match (self.reloader)() {
            Ok(c) => c,
            Err(e) => {
                warn!("SIGHUP: new configuration rejected, keeping the running one: {e}");
                return;
            }
        };
        let level = new.log.level.clone();
        match self.live.offer(new) {
            ReloadOutcome::Applied => {
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
    }
}

/// How long aborted transfers get to send their last words and be logged after the drain
/// timeout, before the process exits anyway.
const CUT_GRACE: Duration = Duration::from_secs(2);

fn supervise(
    events: mpsc::Receiver<Event>,
    workers: usize,
    shutdown: &tokio::sync::watch::Sender<Phase>,
    wakers: &[OwnedFd],
    shared: &Shared,
    reload: &Reload,
) -> i32 {
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
                reload.run();
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
                for fd in wakers {
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
