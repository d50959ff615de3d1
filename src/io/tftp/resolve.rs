//! Where a TFTP request is served from: remap rules on the name as sent, then the client's
//! root (`client_roots`, `unique_root`), reads falling back to the common root, and the
//! case-insensitive lookup. The server and `ferry tftp-resolve` both go through [`Resolver::explain`].

use super::neighbours::Neighbours;
use crate::config::TftpConfig;
use crate::fs::Root;
use crate::tftp::remap::{Client, Hit};
use crate::tftp::request::normalize_path;
use crate::tftp::roots::{self, Choice, MacAddr};
use crate::tftp::{Direction, ErrorCode, Refusal, Request};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Entries of one directory a case-insensitive lookup reads at most.
pub const CASE_SEARCH_ENTRIES: usize = 10_000;

/// How long a client root that could not be opened is left alone before the next try.
const REOPEN_AFTER: Duration = Duration::from_secs(10);

/// Client roots by path: opened before the privilege drop, or on first use after a reload
/// added them (`Err` holds when an open last failed).
type RootTable = HashMap<PathBuf, Result<Arc<Root>, Instant>>;

/// Resolves requests for all workers.
#[derive(Debug)]
pub struct Resolver {
    common: Arc<Root>,
    roots: Mutex<RootTable>,
    neighbours: Neighbours,
}

/// How a MAC address was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacSource {
    /// Given by the caller (`tftp-resolve --mac`).
    Given,
    /// Read from the kernel's neighbour table.
    NeighbourTable,
}

/// One root and path considered for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// The root's directory.
    pub root: PathBuf,
    /// The path under it.
    pub path: PathBuf,
    /// `found`, `found ignoring case`, `not found`, `not checked` (the only candidate), or
    /// the error that stopped the search there.
    pub result: String,
}

/// What resolving a request did, step by step.
#[derive(Debug)]
pub struct Resolution {
    /// The name after `backslash_to_slash` and the rules (as sent when neither applies).
    pub name: Vec<u8>,
    /// The rules that matched, in order.
    pub hits: Vec<Hit>,
    /// Why the rules refused the name.
    pub remap_error: Option<String>,
    /// The client's MAC, when one was needed and known.
    pub mac: Option<(MacAddr, MacSource)>,
    /// The client's entry and unique directory.
    pub choice: Option<Choice>,
    /// The candidates, in the order they were considered.
    pub tried: Vec<Tried>,
    /// The root and request to serve, or the ERROR to answer.
    pub outcome: Result<(Arc<Root>, Request), Refusal>,
}

impl Resolver {
    /// A resolver serving `common` and the client roots already opened in `roots`.
    pub fn new(common: Arc<Root>, roots: HashMap<PathBuf, Arc<Root>>) -> Resolver {
        let roots = roots.into_iter().map(|(p, r)| (p, Ok(r))).collect();
        Resolver { common, roots: Mutex::new(roots), neighbours: Neighbours::default() }
    }

    /// Opens every client root `cfg` names (before the privilege drop).
    pub fn open_client_roots(cfg: &TftpConfig) -> Result<HashMap<PathBuf, Arc<Root>>, (PathBuf, io::Error)> {
        let mut out = HashMap::new();
        for entry in &cfg.client_roots {
            if !out.contains_key(&entry.root) {
                let root = Root::open(&entry.root).map_err(|e| (entry.root.clone(), e))?;
                out.insert(entry.root.clone(), Arc::new(root));
            }
        }
        Ok(out)
    }

    /// The root and normalized request to serve `request` from `client` with.
    pub fn resolve(
        &self,
        client: IpAddr,
        request: Request,
        cfg: &TftpConfig,
    ) -> Result<(Arc<Root>, Request), Refusal> {
        let r = self.explain(client, None, request, cfg);
        if !r.hits.is_empty() || r.remap_error.is_some() {
            let lines: Vec<usize> = r.hits.iter().map(|h| h.line).collect();
            debug!(rules = ?lines, name = %String::from_utf8_lossy(&r.name), error = ?r.remap_error, "remapped");
        }
        r.outcome
    }

    /// [`Resolver::resolve`] with every step recorded; `mac` stands in for the neighbour table.
    pub fn explain(
        &self,
        client: IpAddr,
        mac: Option<MacAddr>,
        request: Request,
        cfg: &TftpConfig,
    ) -> Resolution {
        let mut r = Resolution {
            name: request.name.clone(),
            hits: Vec::new(),
            remap_error: None,
            mac: None,
            choice: None,
            tried: Vec::new(),
            outcome: Err(Refusal::internal()),
        };
        let mut request = request;
        r.outcome =
            self.run(client.to_canonical(), mac, &mut request, cfg, &mut r).map(|root| (root, request));
        r
    }

    fn run(
        &self,
        client: IpAddr,
        mac: Option<MacAddr>,
        request: &mut Request,
        cfg: &TftpConfig,
        r: &mut Resolution,
    ) -> Result<Arc<Root>, Refusal> {
        let write = request.direction == Direction::Write;
        let remap = &cfg.remap;
        if remap.backslash_to_slash || remap.rules.is_some() {
            if remap.backslash_to_slash {
                r.name.iter_mut().filter(|b| **b == b'\\').for_each(|b| *b = b'/');
            }
            if let Some(rules) = &remap.rules {
                match rules.apply(&r.name, Client { ip: client, write }) {
                    Ok(out) => (r.name, r.hits) = (out.name, out.hits),
                    Err(e) => {
                        r.remap_error = Some(e.to_string());
                        return Err(e.refusal());
                    }
                }
            }
            // Confinement as for any name: a leading `/` is the root, `..` is refused.
            request.path = normalize_path(&r.name)?;
        }
        let mac = match mac {
            Some(m) => Some((m, MacSource::Given)),
            None if roots::needs_mac(&cfg.client_roots, cfg.unique_root) => {
                self.neighbours.lookup(client).map(|m| (m, MacSource::NeighbourTable))
            }
            None => None,
        };
        r.mac = mac;
        let choice = roots::choose(&cfg.client_roots, cfg.unique_root, client, mac.map(|m| m.0));
        let base = match choice.entry {
            Some((i, _)) => self.client_root(&cfg.client_roots[i].root)?,
            None => Arc::clone(&self.common),
        };
        let mut candidates = Vec::new();
        if let Some(dir) = &choice.unique_dir {
            if base.stat(Path::new(dir)).is_ok_and(|m| m.is_dir()) {
                candidates.push((Arc::clone(&base), Path::new(dir).join(&request.path)));
            } else {
                r.tried.push(Tried {
                    root: base.path().to_path_buf(),
                    path: PathBuf::from(dir),
                    result: "no such directory".into(),
                });
            }
        }
        candidates.push((Arc::clone(&base), request.path.clone()));
        // Reads fall back to the common root; an upload stays where the client belongs.
        if !write && !Arc::ptr_eq(&base, &self.common) {
            candidates.push((Arc::clone(&self.common), request.path.clone()));
        }
        if write {
            candidates.truncate(1);
        }
        r.choice = Some(choice);
        let probe = candidates.len() > 1 || (!write && remap.case_insensitive);
        let mut pick = None;
        for (root, path) in &candidates {
            let (result, chosen) = if !probe {
                ("not checked".to_string(), Some(path.clone()))
            } else {
                match find(root, path, !write && remap.case_insensitive) {
                    Found::Exact => ("found".to_string(), Some(path.clone())),
                    Found::IgnoringCase(actual) => {
                        (format!("found ignoring case as {}", actual.display()), Some(actual))
                    }
                    Found::Missing => ("not found".to_string(), None),
                    // Settles it here: the open reports the error.
                    Found::Error(e) => (e.to_string(), Some(path.clone())),
                }
            };
            r.tried.push(Tried { root: root.path().into(), path: path.clone(), result });
            if let Some(chosen) = chosen {
                pick = Some((Arc::clone(root), chosen));
                break;
            }
        }
        // Found nowhere: the first candidate, whose open answers ERROR 1.
        let (root, path) = pick.unwrap_or_else(|| candidates.swap_remove(0));
        request.path = path;
        Ok(root)
    }

    /// An entry's root: opened at start, or now for one a reload added.
    fn client_root(&self, path: &Path) -> Result<Arc<Root>, Refusal> {
        let mut roots = self.roots.lock().unwrap_or_else(PoisonError::into_inner);
        match roots.get(path) {
            Some(Ok(root)) => return Ok(Arc::clone(root)),
            Some(Err(failed)) if failed.elapsed() < REOPEN_AFTER => return Err(unavailable()),
            _ => {}
        }
        match Root::open(path) {
            Ok(root) => {
                let root = Arc::new(root);
                roots.insert(path.to_path_buf(), Ok(Arc::clone(&root)));
                Ok(root)
            }
            Err(e) => {
                warn!(root = %path.display(), "cannot open a TFTP client root as the service user: {e}; its clients get ERROR 2 (a restart opens it before the privilege drop)");
                roots.insert(path.to_path_buf(), Err(Instant::now()));
                Err(unavailable())
            }
        }
    }
}

fn unavailable() -> Refusal {
    Refusal::new(ErrorCode::AccessViolation, "client root unavailable")
}

enum Found {
    Exact,
    IgnoringCase(PathBuf),
    Missing,
    Error(io::Error),
}

fn find(root: &Root, path: &Path, ignoring_case: bool) -> Found {
    match root.stat(path) {
        Ok(_) => Found::Exact,
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Found::Error(e),
        Err(_) if !ignoring_case => Found::Missing,
        Err(_) => match root.find_ignoring_case(path, CASE_SEARCH_ENTRIES) {
            Ok(actual) => Found::IgnoringCase(actual),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Found::Missing,
            Err(e) => Found::Error(e),
        },
    }
}

mod report;
pub use report::report;

#[cfg(test)]
mod tests;
