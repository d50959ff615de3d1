//! TFTP state every worker reads: the served directory and the resolver of per-client roots,
//! the server-wide transfer count, the per-IP request rate and the netascii memory budget.

use super::cache::FileCache;
use super::limits::RateLimiter;
use super::resolve::Resolver;
use crate::config::Config;
use crate::fs::Root;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// TFTP state shared by all workers.
#[derive(Debug)]
pub struct TftpShared {
    /// The directory TFTP serves (`tftp.root`, else the top-level root), opened before the
    /// privilege drop.
    pub root: Arc<Root>,
    /// Where each request is served from: remap rules, client roots, fallbacks.
    pub resolver: Resolver,
    /// TFTP transfers running in all workers, checked against `tftp.max_transfers`.
    pub transfers: Arc<AtomicUsize>,
    /// Bytes of netascii-encoded files held by TFTP transfers in all workers, checked
    /// against `tftp.netascii_memory_bytes`.
    pub netascii_bytes: Arc<AtomicU64>,
    /// Hot files' bytes, for all workers (looked up once per RRQ).
    pub cache: Arc<FileCache>,
    /// Request rate per client IP, for all workers: locked once per RRQ/WRQ (never per DATA
    /// or ACK), so the lock is short and rare next to the transfers it admits.
    rate: Mutex<RateLimiter>,
}

impl TftpShared {
    /// The state for serving `root` and the `client_roots` opened before the privilege drop
    /// (by [`Resolver::open_client_roots`]) under `config`; the file cache keeps its byte
    /// count in `cache_bytes` (a metrics gauge).
    pub fn new(
        config: &Config,
        root: Arc<Root>,
        client_roots: HashMap<PathBuf, Arc<Root>>,
        cache_bytes: Arc<AtomicU64>,
    ) -> TftpShared {
        let cfg = &config.tftp;
        TftpShared {
            cache: Arc::new(FileCache::new(cfg.cache_bytes, cfg.cache_max_file_bytes, cache_bytes)),
            resolver: Resolver::new(Arc::clone(&root), client_roots),
            root,
            transfers: Default::default(),
            netascii_bytes: Default::default(),
            rate: Mutex::new(RateLimiter::new(config.tftp.requests_per_second_per_ip)),
        }
    }

    /// The shared per-IP rate limiter; a poisoned lock (a panic elsewhere while holding it)
    /// still holds consistent buckets, so it is used as is.
    pub fn rate(&self) -> MutexGuard<'_, RateLimiter> {
        self.rate.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
