//! Each worker's registry of its running sessions and transfers, for the live session view:
//! touched only by that worker's tasks, and read by a snapshot task answering the metrics thread.

use crate::observe::sessions::{SessionInfo, SnapshotRequest};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::Receiver;

/// What one running session or transfer shows.
#[derive(Debug)]
pub struct Entry {
    /// `ftp` or `tftp`.
    pub protocol: &'static str,
    /// The client.
    pub client: SocketAddr,
    /// The FTP login name, once logged in.
    pub user: Option<Arc<str>>,
    /// When it started.
    pub started: Instant,
    /// The running transfer; none when an FTP session is idle.
    pub activity: Option<Activity>,
}

/// A running transfer's part of an [`Entry`].
#[derive(Debug)]
pub struct Activity {
    /// `RETR`, `STOR`, `LIST`, `RRQ`, `WRQ`.
    pub state: &'static str,
    /// The file or directory.
    pub file: String,
    /// Bytes so far: the very counter the transfer keeps, so showing it costs nothing more.
    pub bytes: Rc<Cell<u64>>,
    /// When the transfer started (its rate is over this time).
    pub started: Instant,
}

impl Activity {
    /// A transfer starting now, counting into `bytes`.
    pub fn new(state: &'static str, file: String, bytes: Rc<Cell<u64>>) -> Activity {
        Activity { state, file, bytes, started: Instant::now() }
    }
}

impl Entry {
    /// A session or transfer from `client` starting now.
    pub fn new(protocol: &'static str, client: SocketAddr, activity: Option<Activity>) -> Entry {
        Entry { protocol, client, user: None, started: Instant::now(), activity }
    }

    fn info(&self, worker: usize, now: Instant) -> SessionInfo {
        let (state, file, bytes, rate_bps) = match &self.activity {
            Some(a) => {
                let bytes = a.bytes.get();
                let secs = now.saturating_duration_since(a.started).as_secs_f64();
                let rate = if secs > 0.0 { (bytes as f64 / secs) as u64 } else { 0 };
                (a.state, Some(a.file.clone()), bytes, rate)
            }
            None => ("idle", None, 0, 0),
        };
        // IPv4 clients of a dual-stack listener as IPv4, as the logs show them.
        let client = SocketAddr::new(self.client.ip().to_canonical(), self.client.port());
        SessionInfo {
            protocol: self.protocol.into(),
            client: client.to_string(),
            user: self.user.as_deref().map(String::from),
            state: state.into(),
            file,
            bytes,
            rate_bps,
            age_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            worker,
        }
    }
}

/// One worker's entries. Single-threaded: a `RefCell` borrowed only for synchronous updates.
#[derive(Debug, Default)]
pub struct Registry {
    next: Cell<u64>,
    entries: RefCell<HashMap<u64, Entry>>,
}

impl Registry {
    /// Lists `entry` until the returned guard drops.
    pub fn add(self: &Rc<Self>, entry: Entry) -> Registration {
        let id = self.next.get();
        self.next.set(id + 1);
        self.entries.borrow_mut().insert(id, entry);
        Registration { registry: Rc::clone(self), id }
    }

    /// Every entry as plain data, as of `now`.
    pub fn snapshot(&self, worker: usize, now: Instant) -> Vec<SessionInfo> {
        self.entries.borrow().values().map(|e| e.info(worker, now)).collect()
    }
}

/// A listed entry; dropping it takes the entry off the list.
#[derive(Debug)]
pub struct Registration {
    registry: Rc<Registry>,
    id: u64,
}

impl Registration {
    /// Changes the entry (a login, a transfer starting or ending).
    pub fn update(&self, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.registry.entries.borrow_mut().get_mut(&self.id) {
            change(entry);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.entries.borrow_mut().remove(&self.id);
    }
}

/// Answers the metrics thread's snapshot requests until it is gone (one task per worker).
pub async fn answer(registry: Rc<Registry>, worker: usize, mut requests: Receiver<SnapshotRequest>) {
    while let Some(reply) = requests.recv().await {
        let _ = reply.send((worker, registry.snapshot(worker, Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_as_long_as_their_guard_and_show_their_counter() {
        let registry = Rc::new(Registry::default());
        let client: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let session = registry.add(Entry::new("ftp", client, None));
        session.update(|e| e.user = Some("alice".into()));
        let bytes = Rc::new(Cell::new(0));
        session.update(|e| e.activity = Some(Activity::new("RETR", "/big".into(), Rc::clone(&bytes))));
        bytes.set(5000);
        let later = Instant::now() + std::time::Duration::from_secs(2);
        let seen = registry.snapshot(3, later);
        assert_eq!(seen.len(), 1);
        let s = &seen[0];
        assert_eq!(
            (s.client.as_str(), s.user.as_deref(), s.state.as_str()),
            ("127.0.0.1:4000", Some("alice"), "RETR")
        );
        assert_eq!((s.file.as_deref(), s.bytes, s.worker), (Some("/big"), 5000, 3));
        assert!((2000..=2500).contains(&s.rate_bps), "{}", s.rate_bps);
        session.update(|e| e.activity = None);
        assert_eq!(registry.snapshot(0, later)[0].state, "idle");
        drop(session);
        assert!(registry.snapshot(0, later).is_empty());
    }
}
