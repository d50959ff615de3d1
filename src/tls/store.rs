//! The resumption store of one control session: the TLS sessions (TLS 1.2 ids, TLS 1.3
//! stateful tickets) issued on that control connection and its data connections, nothing else.
//!
//! Each control session gets a `ServerConfig` of its own with its own store, so a data
//! connection can resume only a session that this control connection negotiated: a thief
//! who connects to the passive port first has no such ticket, and a full handshake there is
//! refused (vsftpd's `require_ssl_reuse`). Tickets stay after use: every data connection of
//! the session may resume the same one (clients keep the control connection's ticket; a
//! store that hands each ticket out once breaks the second transfer, curl #4654).

use rustls::server::StoresServerSessions;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Sessions one control session keeps; the oldest go first. The control handshake issues two
/// TLS 1.3 tickets, each resumed data handshake two more: a client resumes with a recent one.
const MAX_ENTRIES: usize = 8;

/// A small, bounded, per-control-session [`StoresServerSessions`].
#[derive(Debug, Default)]
pub struct SessionStore {
    entries: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl SessionStore {
    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session was stored yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Vec<u8>, Vec<u8>)>> {
        // A panic while held cannot leave the deque half-changed; keep serving.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StoresServerSessions for SessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut entries = self.lock();
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Not removed: see the module doc (0-RTT, the one reason to take tickets once, is off).
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_reusable() {
        let s = SessionStore::default();
        for i in 0..20u8 {
            assert!(s.put(vec![i], vec![i; 3]));
        }
        assert_eq!(s.len(), MAX_ENTRIES, "the oldest are dropped");
        assert_eq!(s.get(&[0]), None);
        assert_eq!(s.take(&[19]), Some(vec![19; 3]));
        assert_eq!(s.take(&[19]), Some(vec![19; 3]), "a ticket resumes more than one data connection");
    }
}
