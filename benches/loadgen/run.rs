//! Thread-per-core driver: `threads` OS threads, each with its own single-threaded tokio
//! runtime, share `concurrency` client tasks round-robin. Tasks never share state on the
//! hot path; they draw work from one atomic budget and merge their statistics at the end.

use crate::report::Stats;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much work the whole run may do: a count, a deadline, or both (whichever ends first).
pub struct Budget {
    count: Option<u64>,
    deadline: Option<Instant>,
    taken: AtomicU64,
}

impl Budget {
    /// A budget of `count` units and/or `duration` of wall time from now.
    pub fn new(count: Option<u64>, duration: Option<Duration>) -> Budget {
        Budget { count, deadline: duration.map(|d| Instant::now() + d), taken: AtomicU64::new(0) }
    }

    /// The next unit's sequence number, or `None` when the budget is spent.
    pub fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        match self.count {
            Some(c) if n >= c => None,
            _ => Some(n),
        }
    }
}

/// Runs `concurrency` tasks made by `make(task_id)` over `threads` runtimes; returns the
/// merged statistics once every task has finished.
pub fn run_tasks<F, Fut>(threads: usize, concurrency: usize, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Stats> + 'static,
{
    let make = Arc::new(make);
    let threads = threads.clamp(1, concurrency.max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let make = Arc::clone(&make);
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let mut s = Stats::default();
                            s.fail(&crate::report::Failure::Io(e));
                            return s;
                        }
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        let tasks: Vec<_> = (t..concurrency)
                            .step_by(threads)
                            .map(|id| tokio::task::spawn_local(make(id)))
                            .collect();
                        let mut all = Stats::default();
                        for task in tasks {
                            match task.await {
                                Ok(s) => all.merge(s),
                                Err(e) => {
                                    all.fail(&crate::report::Failure::Protocol(format!("task died: {e}")))
                                }
                            }
                        }
                        all
                    })
                })
                .expect("spawn a load generator thread")
        })
        .collect();
    let mut all = Stats::default();
    for h in handles {
        match h.join() {
            Ok(s) => all.merge(s),
            Err(_) => all.fail(&crate::report::Failure::Protocol("load generator thread panicked".into())),
        }
    }
    all
}
