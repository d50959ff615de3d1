//! FTP state outside the sessions: [`FtpShared`] (settings, every account root opened before
//! the privilege drop, session counters, the listing memory budget, the kernel-TLS probe) is
//! read by all workers; [`FtpWorker`] (pipe pool, password verifier, transfer count) belongs to
//! one worker thread.

use super::ktls::KernelTls;
use super::limits::{self, SessionLimits};
use super::verifier::{self, Busy, Check, Verifier};
use crate::config::ftp::FtpConfig;
use crate::config::Config;
use crate::fs::Root;
use crate::ftp::FtpSettings;
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::zerocopy::{PipePool, TransferLimits};
use crate::tls::TlsServer;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Idle pipes a worker keeps between transfers.
const PIPES_PER_WORKER: usize = 8;
/// Pipe size for splice transfers: the kernel's largest (pipe-max-size, 1 MiB). It moved a
/// 1 GiB upload in 0.34 s instead of 0.57 s with 256 KiB pipes.
const PIPE_SIZE: usize = 1024 * 1024;
/// Large pipes a worker keeps open at once, and the size of the rest: with two workers,
/// 32 MiB of large pipes plus 128 crowded ones stay under the per-user pipe page limit
/// (pipe-user-pages-soft, 64 MiB).
const LARGE_PIPES_PER_WORKER: usize = 16;
const CROWDED_PIPE_SIZE: usize = 256 * 1024;

/// File bytes a user-space TLS transfer reads (and ciphertext it receives) at once: eight
/// full TLS records per read and send.
const TLS_BUFFER: usize = 128 * 1024;
/// Idle TLS transfer buffers a worker keeps.
const TLS_BUFFERS_IDLE: usize = 8;

/// FTP state every worker reads; built once before the privilege drop.
#[derive(Debug)]
pub struct FtpShared {
    /// The session settings.
    pub settings: Arc<FtpSettings>,
    /// Admission counters.
    pub limits: Arc<SessionLimits>,
    /// Worker count, for splitting the global rate cap.
    pub workers: usize,
    /// Bytes of rendered listings held by all sessions (see `LISTING_MEMORY_BYTES`).
    pub listing_bytes: Arc<AtomicU64>,
    roots: HashMap<PathBuf, Arc<Root>>,
    /// The FTPS server configuration new sessions take; replaced on SIGHUP (certificate
    /// rotation), never for sessions already running.
    tls: Mutex<Option<TlsServer>>,
    /// Whether data connections can hand their TLS to the kernel (probed at start).
    pub ktls: KernelTls,
}

impl FtpShared {
    /// Builds the settings and opens every account root (anonymous and each user), reusing
    /// `top` for accounts served from the top-level root.
    pub fn open(config: &Config, top: &Arc<Root>, workers: usize) -> Result<FtpShared, String> {
        let settings = crate::config::ftp::session_settings(config).map_err(|e| e.to_string())?;
        let mut roots = HashMap::new();
        roots.insert(config.root.clone(), Arc::clone(top));
        let paths = settings.anonymous.iter().map(|a| &a.root).chain(settings.users.iter().map(|u| &u.root));
        for path in paths {
            if !roots.contains_key(path) {
                let root =
                    Root::open(path).map_err(|e| format!("cannot open FTP root {}: {e}", path.display()))?;
                roots.insert(path.clone(), Arc::new(root));
            }
        }
        let tls = config.ftp.tls.load().map_err(|e| e.to_string())?;
        if let Some(server) = &tls {
            warn_if_expired(server);
        }
        // Probed only where FTPS is on: the probe may load the `tls` module (as root).
        let ktls = match tls {
            Some(_) => KernelTls::start(config.ftp.tls.ktls)?,
            None => KernelTls::default(),
        };
        let limits = &config.ftp.limits;
        Ok(FtpShared {
            tls: Mutex::new(tls),
            ktls,
            limits: Arc::new(SessionLimits::new(limits.max_sessions, limits.max_sessions_per_ip)),
            settings: Arc::new(settings),
            workers,
            listing_bytes: Arc::new(AtomicU64::new(0)),
            roots,
        })
    }

    /// The TLS configuration for a session starting now.
    pub fn tls(&self) -> Option<TlsServer> {
        self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the certificate and key (SIGHUP) as the service user: sessions that start
    /// afterwards use the new ones. A file that fails keeps the running configuration.
    pub fn reload_tls(&self, config: &Config) {
        match config.ftp.tls.load() {
            Ok(server) => {
                if let Some(s) = &server {
                    warn_if_expired(s);
                    info!("SIGHUP: TLS certificate reloaded for new sessions");
                }
                *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = server;
            }
            Err(e) => warn!("SIGHUP: TLS certificate NOT reloaded, keeping the running one: {e}"),
        }
    }

    /// The root for an account's directory: opened at start-up, or (for an account added by
    /// a reload) opened now, as the service user.
    pub fn root(&self, path: &Path) -> Option<Arc<Root>> {
        if let Some(root) = self.roots.get(path) {
            return Some(Arc::clone(root));
        }
        match Root::open(path) {
            Ok(root) => Some(Arc::new(root)),
            Err(e) => {
                warn!(root = %path.display(), "cannot open the account root: {e}");
                None
            }
        }
    }
}

/// Warns when the certificate is past its notAfter: clients will refuse it.
fn warn_if_expired(server: &TlsServer) {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if let Some(until) = server.not_after_unix().filter(|until| *until < now) {
        warn!(
            key = "ftp.tls.certificate",
            expired_days_ago = (now - until) / 86_400,
            "the TLS certificate has expired: clients that check it will refuse to connect"
        );
    }
}

/// One worker's FTP resources.
pub struct FtpWorker {
    /// Shared state.
    pub shared: Arc<FtpShared>,
    /// Pipes for splice transfers.
    pub pipes: PipePool,
    /// Buffers user-space TLS transfers read files into and receive uploads with.
    pub tls_buffers: BufPool,
    /// Transfers running on this worker (for the global rate split).
    pub transfers: Cell<usize>,
    verifier: OnceCell<Option<Verifier>>,
    worker: usize,
    /// Settings built from the configuration last seen, rebuilt after a reload.
    current: RefCell<SessionConfig>,
}

/// What a session starts with and keeps for its life: the core's settings and the
/// configuration they were built from, where the io layer reads timeouts, passive ports,
/// uploads and limits. A reload applies to sessions that start after it.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The core's settings.
    pub settings: Arc<FtpSettings>,
    /// The configuration they came from.
    pub config: Arc<Config>,
}

impl SessionConfig {
    /// The `[ftp]` section.
    pub fn ftp(&self) -> &FtpConfig {
        &self.config.ftp
    }
}

impl FtpWorker {
    /// The FTP resources of worker `worker`.
    pub fn new(shared: Arc<FtpShared>, worker: usize, config: Arc<Config>) -> FtpWorker {
        let current = RefCell::new(SessionConfig { settings: Arc::clone(&shared.settings), config });
        FtpWorker {
            current,
            shared,
            pipes: PipePool::new(PIPES_PER_WORKER, PIPE_SIZE)
                .with_crowding(LARGE_PIPES_PER_WORKER, CROWDED_PIPE_SIZE),
            tls_buffers: BufPool::new(TLS_BUFFER, TLS_BUFFERS_IDLE),
            transfers: Cell::new(0),
            verifier: OnceCell::new(),
            worker,
        }
    }

    /// The settings for a session starting now: rebuilt when a reload replaced the
    /// configuration (new users, permissions, limits, passive addresses), else cached.
    pub fn settings(&self, config: Arc<Config>) -> SessionConfig {
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(&current.config, &config) {
            match crate::config::ftp::session_settings(&config) {
                Ok(fresh) => {
                    let l = &config.ftp.limits;
                    self.shared.limits.set_maxima(l.max_sessions, l.max_sessions_per_ip);
                    *current = SessionConfig { settings: Arc::new(fresh), config };
                }
                // The reload path validated this configuration; keep serving if it still fails.
                Err(e) => warn!("reloaded FTP settings rejected, keeping the previous ones: {e}"),
            }
        }
        current.clone()
    }

    /// Limits for a transfer starting now on this worker.
    pub fn transfer_limits(&self, ftp: &FtpConfig) -> TransferLimits {
        let l = &ftp.limits;
        TransferLimits {
            stall_timeout: Duration::from_secs(l.data_timeout_secs),
            rate_bps: limits::transfer_rate(
                l.rate_limit_session_bps,
                l.rate_limit_global_bps,
                self.shared.workers,
                self.transfers.get(),
            ),
        }
    }

    /// Checks a password against an argon2 PHC string on this worker's verifier thread
    /// (argon2 takes tens of milliseconds by design and must not stall the event loop), taking
    /// turns with other client addresses; `Busy` when it cannot be checked in time.
    pub fn verify_password(
        &self,
        from: IpAddr,
        phc: String,
        password: Vec<u8>,
    ) -> impl Future<Output = Check> + 'static {
        // Started lazily (a server without virtual users never needs it), after the privilege drop.
        let verifier = self.verifier.get_or_init(|| {
            Verifier::spawn(self.worker, verifier::LIMITS)
                .inspect_err(|e| {
                    warn!(worker = self.worker, "cannot start the password verifier thread: {e}")
                })
                .ok()
        });
        let check = verifier.as_ref().map(|v| v.check(from, phc, password));
        async move {
            match check {
                Some(check) => check.await,
                None => Check::Busy(Busy::Unavailable),
            }
        }
    }
}
