//! A server-wide cache of hot TFTP files (a boot storm fetches the same few files thousands of
//! times): DATA is copied from memory instead of read per block. Bounded in bytes, keyed by the
//! file's identity and version, and looked up once per request under a lock, never per block.
//! A file is read in when a second transfer of it starts while another runs: one client at a
//! time gains nothing from a copy (the page cache serves it as fast) and would pay for the load.
//!
//! Server-wide rather than per worker: a per-worker cache would hold one copy of a boot image
//! per CPU, so a 64-core box would need 64 times the memory for the same hit rate.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// A file's identity and version: a replaced file (new inode) or one changed in place (new
/// mtime/ctime or size) gets a new key, so a stale copy is never served for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of a file from the metadata its open already read (no second fstat).
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The key of an open file now, from fstat(2): after a load, to see it did not change.
    pub fn of(file: &impl AsFd) -> io::Result<FileKey> {
        let st = nix::sys::stat::fstat(file.as_fd().as_raw_fd()).map_err(io::Error::from)?;
        Ok(FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(u64::MAX),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A cached file's bytes; its size leaves the cache's count when the last user drops it.
#[derive(Debug)]
pub struct CachedFile {
    bytes: Vec<u8>,
    held: Arc<AtomicU64>,
}

impl CachedFile {
    /// The file's content.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// A file being read in: filled once, when the load succeeds. Transfers that started
/// meanwhile (all of them, in a storm that begins at once) switch to it on their next send.
#[derive(Debug, Default)]
pub struct Pending(OnceLock<Arc<CachedFile>>);

impl Pending {
    /// The file's bytes, once loaded.
    pub fn get(&self) -> Option<&Arc<CachedFile>> {
        self.0.get()
    }
}

enum Slot {
    /// Read from the file, not cached, by the transfers holding a clone of the token: a
    /// request that finds another holder loads the file.
    Alone(Arc<()>),
    /// One request is reading the file in; others meanwhile read from the file.
    Loading(Arc<Pending>),
    /// In memory; `used` orders entries for eviction (least recently used first).
    Ready { file: Arc<CachedFile>, used: u64 },
}

/// What a request finds.
pub enum Lookup {
    /// The file's bytes.
    Hit(Arc<CachedFile>),
    /// Not cached; this request should read it in with the ticket (its bytes are reserved).
    Load(LoadTicket),
    /// Being read in by another request: read from the file until it is ready.
    Loading(Arc<Pending>),
    /// Not cached now: no room.
    Miss,
    /// Not cached: no other transfer reads it now. Read from the file, holding the token for
    /// as long as the transfer runs, so a request meanwhile loads the file.
    Alone(Reader),
    /// Never cached: empty, bigger than the per-file limit, or the cache is off.
    Uncacheable,
}

/// The cache, shared by all workers.
pub struct FileCache {
    /// Most bytes held at once, entries in use included; 0 disables the cache.
    budget: u64,
    /// Largest file cached.
    max_file: u64,
    /// Bytes held: cached files alive (in the table or still in use) plus loads under way.
    held: Arc<AtomicU64>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<FileKey, Slot>,
    tick: u64,
    /// Entries beyond which idle `Alone` slots (files nobody reads now) are dropped.
    sweep_at: usize,
}

/// Entries the table holds before its first sweep of idle `Alone` slots; the threshold then
/// doubles with what stays, so sweeping costs O(1) per lookup on average.
const SWEEP_AT: usize = 4096;

/// A transfer reading an uncached file; see [`Lookup::Alone`].
#[derive(Debug)]
pub struct Reader {
    _token: Arc<()>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache").field("budget", &self.budget).field("held", &self.held()).finish()
    }
}

impl FileCache {
    /// A cache of at most `budget` bytes for files up to `max_file` bytes; `held` is the gauge
    /// it keeps its byte count in (the metrics' `ferry_tftp_cache_bytes`).
    pub fn new(budget: u64, max_file: u64, held: Arc<AtomicU64>) -> FileCache {
        FileCache { budget, max_file: max_file.min(budget), held, table: Mutex::default() }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent through a panic elsewhere: every change is one insert
        // or remove.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `key` up; on a miss with room, reserves its size and hands out a load ticket.
    pub fn lookup(self: &Arc<Self>, key: FileKey) -> Lookup {
        if key.size > self.max_file || key.size == 0 {
            return Lookup::Uncacheable;
        }
        let mut table = self.table();
        table.tick += 1;
        let tick = table.tick;
        match table.slots.get_mut(&key) {
            Some(Slot::Ready { file, used }) => {
                *used = tick;
                return Lookup::Hit(Arc::clone(file));
            }
            Some(Slot::Loading(pending)) => return Lookup::Loading(Arc::clone(pending)),
            Some(Slot::Alone(token)) if Arc::strong_count(token) == 1 => {
                return Lookup::Alone(Reader { _token: Arc::clone(token) });
            }
            // Another transfer reads it now: worth reading in.
            Some(Slot::Alone(_)) => {}
            None => {
                sweep(&mut table);
                let token = Arc::new(());
                table.slots.insert(key, Slot::Alone(Arc::clone(&token)));
                return Lookup::Alone(Reader { _token: token });
            }
        }
        if !self.make_room(&mut table, key.size) {
            return Lookup::Miss;
        }
        self.held.fetch_add(key.size, Ordering::Relaxed);
        let pending = Arc::new(Pending::default());
        table.slots.insert(key, Slot::Loading(Arc::clone(&pending)));
        Lookup::Load(LoadTicket { cache: Arc::clone(self), key, pending, done: false })
    }

    /// Evicts least recently used entries nobody is using until `need` more bytes fit the
    /// budget; false when they cannot (what is in use cannot be freed).
    fn make_room(&self, table: &mut Table, need: u64) -> bool {
        while self.held().saturating_add(need) > self.budget {
            let victim = table
                .slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Ready { file, used } if Arc::strong_count(file) == 1 => Some((*used, *k)),
                    _ => None,
                })
                .min_by_key(|(used, _)| *used);
            let Some((_, key)) = victim else { return false };
            // Dropping the only reference returns its bytes to the count.
            table.slots.remove(&key);
        }
        true
    }
}

/// Drops `Alone` slots nobody holds once the table has grown past its threshold, so files
/// read once each (a crawl of the whole tree) cannot grow it without bound.
fn sweep(table: &mut Table) {
    if table.slots.len() < table.sweep_at.max(SWEEP_AT) {
        return;
    }
    table.slots.retain(|_, slot| !matches!(slot, Slot::Alone(token) if Arc::strong_count(token) == 1));
    table.sweep_at = (table.slots.len() * 2).max(SWEEP_AT);
}

/// The right to put one file into the cache; its reservation is returned when dropped unused.
pub struct LoadTicket {
    cache: Arc<FileCache>,
    key: FileKey,
    pending: Arc<Pending>,
    done: bool,
}

impl LoadTicket {
    /// The file being loaded.
    pub fn key(&self) -> FileKey {
        self.key
    }

    /// Where the bytes appear once loaded.
    pub fn pending(&self) -> Arc<Pending> {
        Arc::clone(&self.pending)
    }

    /// Stores the file's bytes, read in full; refused (and the reservation returned) when
    /// they do not match the key's size or the file changed while being read.
    pub fn finish(mut self, bytes: Vec<u8>, now: FileKey) -> bool {
        if bytes.len() as u64 != self.key.size || now != self.key {
            return false;
        }
        self.done = true;
        let file = Arc::new(CachedFile { bytes, held: Arc::clone(&self.cache.held) });
        let _ = self.pending.0.set(Arc::clone(&file));
        // The reservation becomes the file's own count, returned when it drops.
        let mut table = self.cache.table();
        table.tick += 1;
        let used = table.tick;
        table.slots.insert(self.key, Slot::Ready { file, used });
        true
    }
}

impl Drop for LoadTicket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.cache.table().slots.remove(&self.key);
        self.cache.held.fetch_sub(self.key.size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64, size: u64) -> FileKey {
        FileKey { dev: 1, ino, size, mtime: (0, 0), ctime: (0, 0) }
    }

    fn cache(budget: u64, max_file: u64) -> Arc<FileCache> {
        Arc::new(FileCache::new(budget, max_file, Arc::default()))
    }

    /// A lookup while another transfer reads the file (what loads it).
    fn lookup_shared(c: &Arc<FileCache>, k: FileKey) -> Lookup {
        match c.lookup(k) {
            Lookup::Alone(reader) => {
                let second = c.lookup(k);
                drop(reader);
                second
            }
            other => other,
        }
    }

    fn load(c: &Arc<FileCache>, k: FileKey) -> bool {
        match lookup_shared(c, k) {
            Lookup::Load(t) => t.finish(vec![7; k.size as usize], k),
            _ => false,
        }
    }

    #[test]
    fn a_file_read_by_one_transfer_at_a_time_is_not_loaded() {
        let c = cache(100, 50);
        let k = key(1, 10);
        for _ in 0..3 {
            let Lookup::Alone(reader) = c.lookup(k) else { panic!("one reader: from the file") };
            drop(reader);
        }
        assert_eq!(c.held(), 0);
        let Lookup::Alone(first) = c.lookup(k) else { panic!() };
        assert!(matches!(c.lookup(k), Lookup::Load(_)), "a second reader meanwhile loads it");
        drop(first);
    }

    #[test]
    fn idle_entries_of_files_read_once_are_swept() {
        let c = cache(100, 50);
        let kept = c.lookup(key(0, 10));
        for ino in 1..=(3 * SWEEP_AT as u64) {
            drop(c.lookup(key(ino, 10)));
        }
        assert!(c.table().slots.len() <= 2 * SWEEP_AT, "{} entries", c.table().slots.len());
        let Lookup::Alone(_) = kept else { panic!() };
        assert!(matches!(c.lookup(key(0, 10)), Lookup::Load(_)), "a held entry survives the sweep");
    }

    #[test]
    fn a_file_is_loaded_once_then_hit() {
        let c = cache(100, 50);
        let k = key(1, 10);
        let ticket = match lookup_shared(&c, k) {
            Lookup::Load(t) => t,
            _ => panic!("first lookup must load"),
        };
        let Lookup::Loading(waiting) = c.lookup(k) else { panic!("a second request does not load it again") };
        assert!(waiting.get().is_none());
        assert_eq!(c.held(), 10, "the load's bytes are reserved");
        assert!(ticket.finish(vec![1; 10], k));
        assert_eq!(waiting.get().map(|f| f.bytes().to_vec()), Some(vec![1; 10]), "waiters see the load");
        match c.lookup(k) {
            Lookup::Hit(f) => assert_eq!(f.bytes(), &[1; 10]),
            _ => panic!("expected a hit"),
        }
    }

    #[test]
    fn a_changed_file_or_a_short_read_is_not_stored() {
        let c = cache(100, 50);
        let k = key(1, 10);
        let Lookup::Load(t) = lookup_shared(&c, k) else { panic!() };
        assert!(!t.finish(vec![1; 10], key(1, 11)), "changed while read");
        assert_eq!(c.held(), 0, "the reservation is returned");
        let Lookup::Load(t) = lookup_shared(&c, k) else { panic!("may load again") };
        assert!(!t.finish(vec![1; 9], k), "short read");
        let Lookup::Load(t) = lookup_shared(&c, k) else { panic!() };
        drop(t);
        assert_eq!(c.held(), 0);
        assert!(matches!(lookup_shared(&c, key(2, 10)), Lookup::Load(_)));
    }

    #[test]
    fn memory_stays_within_the_budget_and_files_in_use_are_kept() {
        let c = cache(30, 20);
        assert!(matches!(c.lookup(key(9, 21)), Lookup::Uncacheable), "over the per-file limit");
        assert!(load(&c, key(1, 10)));
        assert!(load(&c, key(2, 10)));
        let Lookup::Hit(in_use) = c.lookup(key(1, 10)) else { panic!() };
        // Room for 10 more: key 3 fits; then key 4 must evict key 2 (unused), not key 1.
        assert!(load(&c, key(3, 10)));
        assert!(load(&c, key(4, 10)));
        assert!(c.held() <= 30);
        assert!(matches!(c.lookup(key(1, 10)), Lookup::Hit(_)), "in use: kept");
        assert!(!matches!(c.lookup(key(2, 10)), Lookup::Hit(_)), "least recently used: evicted");
        drop(in_use);
        assert!(c.held() <= 30);
    }

    #[test]
    fn nothing_fits_when_everything_is_in_use() {
        let c = cache(20, 20);
        assert!(load(&c, key(1, 20)));
        let Lookup::Hit(held) = c.lookup(key(1, 20)) else { panic!() };
        assert!(matches!(lookup_shared(&c, key(2, 10)), Lookup::Miss));
        drop(held);
        assert!(matches!(lookup_shared(&c, key(2, 10)), Lookup::Load(_)));
    }

    #[test]
    fn a_disabled_cache_never_loads() {
        let c = cache(0, 16 << 20);
        assert!(matches!(c.lookup(key(1, 10)), Lookup::Uncacheable));
    }
}
