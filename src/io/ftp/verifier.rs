//! One worker's password verifier: a thread that runs argon2 off the event loop, fed by a
//! queue that serves client addresses in turn, reusing one argon2 memory block for every check.
#![forbid(unsafe_code)]

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::warn;

/// How much one worker's verifier queues, and how long a login may wait for its answer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Checks one client address (an IPv6 /64) may have waiting: a guesser with many sessions
    /// gets no larger share than a client with one.
    pub per_address: usize,
    /// Checks waiting in all.
    pub queued: usize,
    /// From asking to the answer; a check not done by then is refused, and skipped if still
    /// queued.
    pub max_wait: Duration,
}

/// At tens of milliseconds per check (argon2's default cost), 64 queued checks are two or
/// three seconds of work, and one address waits at most a round over the others; the wait
/// bound only cuts in when the machine is starved.
pub const LIMITS: Limits = Limits { per_address: 4, queued: 64, max_wait: Duration::from_secs(10) };

/// The largest argon2 memory, in 1 KiB blocks, a worker holds: 256 MiB, the bound the
/// configuration puts on m_cost. A hash asking for more never matches.
const MAX_BLOCKS: usize = 256 * 1024;

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The password matches.
    Valid,
    /// It does not (or the hash is malformed).
    Invalid,
    /// It was not checked: the session answers 421, and it is no failed login.
    Busy(Busy),
}

/// Why a password was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The client's address has `per_address` checks waiting.
    #[error("too many checks waiting from this address")]
    PerAddress,
    /// `queued` checks are waiting.
    #[error("too many checks waiting")]
    Full,
    /// Not answered within `max_wait`.
    #[error("no answer within the wait bound")]
    Waited,
    /// The verifier thread could not start or has stopped.
    #[error("the verifier is not running")]
    Unavailable,
}

/// Waiting items by client address, the addresses served in turn, one item each: an address
/// with many items waiting delays another's by at most one item per address.
struct FairQueue<T> {
    waiting: HashMap<IpAddr, VecDeque<T>>,
    /// Addresses with items waiting, the next to serve first.
    turns: VecDeque<IpAddr>,
    len: usize,
    per_address: usize,
    total: usize,
}

impl<T> FairQueue<T> {
    fn new(per_address: usize, total: usize) -> FairQueue<T> {
        FairQueue { waiting: HashMap::new(), turns: VecDeque::new(), len: 0, per_address, total }
    }

    /// Queues `item` from `from`, or refuses it (dropping it) when a cap is reached.
    fn push(&mut self, from: IpAddr, item: T) -> Result<(), Busy> {
        let key = share(from);
        if self.waiting.get(&key).is_some_and(|q| q.len() >= self.per_address) {
            return Err(Busy::PerAddress);
        }
        if self.len >= self.total {
            return Err(Busy::Full);
        }
        let queue = self.waiting.entry(key).or_default();
        if queue.is_empty() {
            self.turns.push_back(key);
        }
        queue.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The oldest item of the address whose turn it is.
    fn pop(&mut self) -> Option<T> {
        let key = self.turns.pop_front()?;
        let queue = self.waiting.get_mut(&key)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            // Empty queues go, so the map holds at most `total` addresses.
            self.waiting.remove(&key);
        } else {
            self.turns.push_back(key);
        }
        self.len -= usize::from(item.is_some());
        item
    }
}

/// The share an address counts against: IPv4 (and v4-mapped) addresses alone, IPv6 by /64,
/// the block one client usually holds, so hopping addresses within it gains nothing.
fn share(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

struct Job {
    phc: String,
    password: Vec<u8>,
    done: oneshot::Sender<bool>,
}

struct State {
    queue: FairQueue<Job>,
    /// The worker is gone: the thread ends.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    // A panic while the lock is held cannot leave the queue half-changed (its updates do not
    // panic), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle a worker keeps; dropping it stops the thread once its current check is done.
pub struct Verifier {
    shared: Arc<Shared>,
    max_wait: Duration,
}

impl Verifier {
    /// Starts the verifier thread of worker `worker`.
    pub fn spawn(worker: usize, limits: Limits) -> std::io::Result<Verifier> {
        let verifier = Verifier::new(limits);
        let shared = Arc::clone(&verifier.shared);
        std::thread::Builder::new().name(format!("ferry-auth{worker}")).spawn(move || run(&shared))?;
        Ok(verifier)
    }

    /// The queue, without a thread yet.
    fn new(limits: Limits) -> Verifier {
        let state = State { queue: FairQueue::new(limits.per_address, limits.queued), closed: false };
        let shared = Arc::new(Shared { state: Mutex::new(state), ready: Condvar::new() });
        Verifier { shared, max_wait: limits.max_wait }
    }

    /// Queues a check of `password` against the PHC string `phc` for a client at `from`; the
    /// answer comes within `max_wait`. Dropping the future withdraws the check.
    pub fn check(
        &self,
        from: IpAddr,
        phc: String,
        password: Vec<u8>,
    ) -> impl Future<Output = Check> + 'static {
        let (done, answer) = oneshot::channel();
        let queued = {
            let mut state = self.shared.lock();
            match state.closed {
                true => Err(Busy::Unavailable),
                false => state.queue.push(from, Job { phc, password, done }),
            }
        };
        if queued.is_ok() {
            self.shared.ready.notify_one();
        }
        let max_wait = self.max_wait;
        async move {
            if let Err(why) = queued {
                return Check::Busy(why);
            }
            match tokio::time::timeout(max_wait, answer).await {
                Ok(Ok(true)) => Check::Valid,
                Ok(Ok(false)) => Check::Invalid,
                Ok(Err(_)) => Check::Busy(Busy::Unavailable),
                Err(_) => Check::Busy(Busy::Waited),
            }
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn run(shared: &Shared) {
    // Reused by every check (grown when a hash needs more): allocating argon2's memory per
    // check left tens of MiB per worker in the allocator's arenas.
    let mut memory = Vec::new();
    while let Some(job) = next(shared) {
        // The session ended or stopped waiting: nobody wants this answer.
        if job.done.is_closed() {
            continue;
        }
        let _ = job.done.send(verify(&job.phc, &job.password, &mut memory));
    }
}

/// The next job, waiting for one; `None` once the worker is gone.
fn next(shared: &Shared) -> Option<Job> {
    let mut state = shared.lock();
    loop {
        if state.closed {
            return None;
        }
        if let Some(job) = state.queue.pop() {
            return Some(job);
        }
        state = shared.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Verifies raw password bytes (clients may send non-UTF-8) as argon2's `verify_password`
/// does, in `memory`, grown to the hash's size when smaller; a malformed hash never matches.
fn verify(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        warn!(m_cost = params.m_cost(), "argon2 hash needs more memory than allowed; never matches");
        return false;
    }
    if memory.len() < blocks {
        // Freed first, so the old and the new block are never held together.
        *memory = Vec::new();
        *memory = vec![Block::default(); blocks];
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    // `Output`'s equality is constant-time.
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..]).is_ok()
        && Output::new(out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn phc(password: &str, algorithm: Algorithm, version: Version, params: Params) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(algorithm, version, params).hash_password(password.as_bytes(), &salt).unwrap().to_string()
    }

    #[test]
    fn one_address_with_many_waiting_does_not_starve_another() {
        let mut q = FairQueue::new(4, 64);
        for n in 0..4 {
            q.push(ip("192.0.2.1"), ("a", n)).unwrap();
        }
        q.push(ip("192.0.2.2"), ("b", 0)).unwrap();
        q.push(ip("192.0.2.3"), ("c", 0)).unwrap();
        q.push(ip("192.0.2.2"), ("b", 1)).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3)]);
        assert_eq!((q.len, q.waiting.len(), q.turns.len()), (0, 0, 0));
    }

    #[test]
    fn caps_refuse_as_busy_per_address_then_in_total() {
        let mut q = FairQueue::new(2, 3);
        q.push(ip("192.0.2.1"), 1).unwrap();
        q.push(ip("192.0.2.1"), 2).unwrap();
        assert_eq!(q.push(ip("192.0.2.1"), 3), Err(Busy::PerAddress));
        q.push(ip("192.0.2.2"), 4).unwrap();
        assert_eq!(q.push(ip("192.0.2.3"), 5), Err(Busy::Full));
        // A slot freed is a slot for anyone.
        assert_eq!(q.pop(), Some(1));
        q.push(ip("192.0.2.3"), 5).unwrap();
        assert_eq!(q.len, 3);
    }

    #[test]
    fn an_ipv6_64_is_one_share_and_v4_mapped_is_v4() {
        let mut q = FairQueue::new(1, 64);
        q.push(ip("2001:db8:1:2::1"), 1).unwrap();
        assert_eq!(q.push(ip("2001:db8:1:2:ffff::9"), 2), Err(Busy::PerAddress));
        q.push(ip("2001:db8:1:3::1"), 3).unwrap();
        q.push(ip("192.0.2.1"), 4).unwrap();
        assert_eq!(q.push(ip("::ffff:192.0.2.1"), 5), Err(Busy::PerAddress));
    }

    #[test]
    fn verifies_bytes_against_phc() {
        let phc = crate::auth::hash_password("s3cret").unwrap();
        let mut memory = Vec::new();
        assert!(verify(&phc, b"s3cret", &mut memory));
        assert!(!verify(&phc, b"s3cret\xff", &mut memory));
        assert!(!verify("garbage", b"s3cret", &mut memory));
        assert!(!verify(&phc.replace("$argon2id$", "$scrypt$"), b"s3cret", &mut memory));
    }

    #[test]
    fn agrees_with_argon2s_own_verifier_and_reuses_memory_across_sizes() {
        let params = |m, t, p, len| Params::new(m, t, p, Some(len)).unwrap();
        let hashes = [
            phc("pw", Algorithm::Argon2id, Version::V0x13, params(256, 2, 1, 32)),
            phc("pw", Algorithm::Argon2id, Version::V0x13, params(64, 1, 2, 16)),
            phc("pw", Algorithm::Argon2i, Version::V0x10, params(128, 3, 1, 64)),
            phc("pw", Algorithm::Argon2d, Version::V0x13, params(512, 1, 4, 24)),
        ];
        let mut memory = Vec::new();
        // Growing, shrinking and growing again: stale blocks from a larger hash do not matter.
        for phc in hashes.iter().chain(hashes.iter().rev()) {
            let parsed = PasswordHash::new(phc).unwrap();
            for password in [&b"pw"[..], b"pW", b"", b"pw\0"] {
                let theirs = Argon2::default().verify_password(password, &parsed).is_ok();
                assert_eq!(verify(phc, password, &mut memory), theirs, "{phc} {password:?}");
            }
        }
        assert_eq!(memory.len(), 512, "the block grew to the largest hash and stayed");
    }

    #[test]
    fn memory_beyond_the_bound_is_never_allocated() {
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let params = Params::try_from(&PasswordHash::new(huge).unwrap()).unwrap();
        assert!(params.block_count() > MAX_BLOCKS, "a valid hash, refused for its size alone");
        let mut memory = Vec::new();
        assert!(!verify(huge, b"pw", &mut memory));
        assert!(memory.is_empty());
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    fn cheap(password: &str) -> String {
        phc(password, Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap())
    }

    /// Runs the verifier's loop, as `spawn` does, once the test has queued what it needs.
    fn start(verifier: &Verifier) {
        let shared = Arc::clone(&verifier.shared);
        std::thread::spawn(move || run(&shared));
    }

    #[test]
    fn a_full_share_is_refused_busy_never_invalid() {
        let limits = Limits { per_address: 2, queued: 64, max_wait: Duration::from_secs(60) };
        let verifier = Verifier::new(limits);
        let guesser = ip("192.0.2.1");
        let queued: Vec<_> = (0..2).map(|_| verifier.check(guesser, cheap("pw"), b"no".to_vec())).collect();
        let refused = verifier.check(guesser, cheap("pw"), b"pw".to_vec());
        let other = verifier.check(ip("192.0.2.2"), cheap("pw"), b"pw".to_vec());
        start(&verifier);
        runtime().block_on(async {
            assert_eq!(refused.await, Check::Busy(Busy::PerAddress), "even with the right password");
            assert_eq!(other.await, Check::Valid);
            for answer in queued {
                assert_eq!(answer.await, Check::Invalid);
            }
        });
    }

    #[test]
    fn a_check_not_answered_in_time_is_busy_and_then_skipped() {
        let limits = Limits { per_address: 4, queued: 64, max_wait: Duration::from_millis(100) };
        let verifier = Verifier::new(limits);
        let start_at = std::time::Instant::now();
        // No thread yet: as if it were stuck on long checks.
        let answer = runtime().block_on(verifier.check(ip("192.0.2.1"), cheap("pw"), b"pw".to_vec()));
        assert_eq!(answer, Check::Busy(Busy::Waited));
        assert!(start_at.elapsed() < Duration::from_secs(5), "{:?}", start_at.elapsed());
        // The withdrawn check is dropped unhashed: the queue drains, and a new one is answered.
        start(&verifier);
        let answer = runtime().block_on(verifier.check(ip("192.0.2.1"), cheap("pw"), b"pw".to_vec()));
        assert_eq!(answer, Check::Valid);
        assert_eq!(verifier.shared.lock().queue.len, 0);
    }

    #[test]
    fn a_stopped_verifier_refuses_as_unavailable() {
        let verifier = Verifier::new(LIMITS);
        let queued = verifier.check(ip("192.0.2.1"), cheap("pw"), b"pw".to_vec());
        start(&verifier);
        drop(verifier);
        // Queued before the stop: answered or dropped, never judged wrong.
        let answer = runtime().block_on(queued);
        assert!(matches!(answer, Check::Valid | Check::Busy(Busy::Unavailable)), "{answer:?}");
        let verifier = Verifier::new(LIMITS);
        verifier.shared.lock().closed = true;
        let answer = runtime().block_on(verifier.check(ip("192.0.2.1"), cheap("pw"), b"pw".to_vec()));
        assert_eq!(answer, Check::Busy(Busy::Unavailable));
    }
}
