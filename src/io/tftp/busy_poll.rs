//! Waiting for a lone transfer's next datagram by polling its socket for a few microseconds
//! before the worker thread sleeps (`tftp.busy_poll_us`), for as long as that pays.
//!
//! Why: one lock-step client moves one block per round trip, and a round trip through a
//! sleeping thread pays for its wake-up twice: the client's ACK must wake the worker (an
//! interrupt to the idle CPU; on a VM a trip through the hypervisor, 15 us of the sender's
//! CPU on the EPYC VMs these benchmarks ran on) and the worker must then be scheduled. With
//! the worker polling, the client's send finds nobody to wake and the worker sees the ACK
//! at once: one loopback client went from 12 to about 38 MB/s and the server spent less CPU
//! per block, not more. A worker with more transfers than [`MAX_TRANSFERS`] is rarely idle
//! between datagrams, so it never polls; nor does a transfer whose client answered slower
//! than the budget the last time (a slow firmware client would make polling pure waste).

use super::inbox::Delivery;
use super::inlet::Inlet;
use crate::io::context::CutSignal;
use crate::io::ring::buf_pool::BufPool;
use crate::observe::metrics::{Metric, WorkerMetrics};
use std::time::{Duration, Instant};

/// Transfers on one worker up to which a transfer polls: beyond it, the others' datagrams
/// keep the worker awake, and polling would only spend syscalls (and, on a CPU shared with
/// clients, their time).
pub const MAX_TRANSFERS: i64 = 4;

/// One transfer's polling state.
#[derive(Debug)]
pub struct BusyPoll {
    /// How long to poll before sleeping; zero = never.
    budget: Duration,
    /// The client's last answer came within the budget (so the next one likely will).
    pays: bool,
    /// When the current wait began.
    since: Option<Instant>,
}

impl BusyPoll {
    /// Polling for at most `budget` per wait (zero turns it off).
    pub fn new(budget: Duration) -> BusyPoll {
        BusyPoll { budget, pays: true, since: None }
    }

    /// Polls `inlet` until a datagram comes, `deadline` (the transfer's timer) or the budget
    /// passes, or the worker gets busy; `None` means: wait asleep.
    ///
    /// Each round gives the worker's other tasks, its ring and its reactor a turn ([`turn`])
    /// and the CPU to any other thread that wants it (`sched_yield`), so polling takes only
    /// time nobody else wants.
    pub async fn poll(
        &mut self,
        inlet: &mut Inlet,
        pool: &BufPool,
        metrics: &WorkerMetrics,
        deadline: Instant,
        cut: &CutSignal,
    ) -> Option<Delivery> {
        let now = Instant::now();
        self.since = Some(now);
        if self.budget.is_zero() || !self.pays || !inlet.pollable() {
            return None;
        }
        let until = (now + self.budget).min(deadline);
        loop {
            if let Some(delivery) = inlet.try_next(pool) {
                return Some(delivery);
            }
            if Instant::now() >= until
                || cut.is_raised()
                || metrics.value(Metric::TftpTransfersActive) > MAX_TRANSFERS
            {
                return None;
            }
            turn().await;
            std::thread::yield_now();
        }
    }

    /// Records that the wait begun by [`BusyPoll::poll`] ended with a datagram (polled or
    /// slept for): the next wait polls only if this one was within the budget. A wait ended
    /// by the timer says nothing about the client's speed and changes nothing.
    pub fn answered(&mut self) {
        if let Some(since) = self.since.take() {
            self.pays = since.elapsed() <= self.budget;
        }
    }
}

/// Lets the worker's other tasks run, submits what they queued on the ring and reads the
/// reactor's events, without sleeping.
///
/// Not `tokio::task::yield_now`, nor a task that wakes itself: a runtime with a task ready
/// looks at its reactor without calling its park hook, and the hook is where tokio-uring
/// submits the ring's queued operations, so a transfer polling without end would hold every
/// other task's file open, disk read and send unsubmitted. A ring no-op leaves this task
/// waiting on the ring: with nothing else ready the runtime parks, the hook submits the
/// no-op with everything queued before it, the no-op completes at once, and the ring's
/// completion wakes the runtime before it can sleep.
async fn turn() {
    // A no-op cannot fail for a reason of its own; if the ring refuses it, the next round
    // polls again and the transfer's timer still bounds the wait.
    let _ = tokio_uring::no_op().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::OwnedFd;
    use std::rc::Rc;

    /// A transfer's socket, watched like a transfer's, and a client socket aimed at it.
    fn pair() -> (Inlet, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (Inlet::own(Rc::new(OwnedFd::from(server))), client)
    }

    /// A worker's buffers, an idle worker's metrics and a cut signal not raised.
    fn kit() -> (BufPool, WorkerMetrics, CutSignal) {
        (BufPool::new(1500, 4), WorkerMetrics::default(), CutSignal::default())
    }

    #[test]
    fn a_waiting_datagram_is_taken_without_sleeping() {
        tokio_uring::start(async {
            let (mut inlet, client) = pair();
            let (pool, metrics, cut) = kit();
            let mut poll = BusyPoll::new(Duration::from_millis(50));
            client.send(b"\0\x04\0\x01").unwrap();
            let far = Instant::now() + Duration::from_secs(5);
            let (res, buf) = poll.poll(&mut inlet, &pool, &metrics, far, &cut).await.expect("polled");
            assert_eq!(res.unwrap().len, 4);
            assert_eq!(&buf[..4], b"\0\x04\0\x01");
        });
    }

    #[test]
    fn a_datagram_sent_while_polling_is_seen() {
        tokio_uring::start(async {
            let (mut inlet, client) = pair();
            let (pool, metrics, cut) = kit();
            let mut poll = BusyPoll::new(Duration::from_secs(2));
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                client.send(b"late").unwrap();
            });
            let far = Instant::now() + Duration::from_secs(5);
            let got = poll.poll(&mut inlet, &pool, &metrics, far, &cut).await;
            sender.join().unwrap();
            assert_eq!(got.expect("polled").0.unwrap().len, 4);
        });
    }

    #[test]
    fn polling_stops_at_the_budget_and_the_timer() {
        tokio_uring::start(async {
            let (mut inlet, _client) = pair();
            let (pool, metrics, cut) = kit();
            let mut poll = BusyPoll::new(Duration::from_millis(30));
            let began = Instant::now();
            assert!(poll
                .poll(&mut inlet, &pool, &metrics, began + Duration::from_secs(5), &cut)
                .await
                .is_none());
            let took = began.elapsed();
            assert!(took >= Duration::from_millis(30) && took < Duration::from_secs(2), "{took:?}");
            // The transfer's own deadline comes first.
            let began = Instant::now();
            let mut poll = BusyPoll::new(Duration::from_secs(5));
            assert!(poll
                .poll(&mut inlet, &pool, &metrics, began + Duration::from_millis(10), &cut)
                .await
                .is_none());
            assert!(began.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn a_slow_client_or_a_busy_worker_or_a_cut_is_not_polled_for() {
        tokio_uring::start(async {
            let (mut inlet, client) = pair();
            let (pool, metrics, cut) = kit();
            let far = Instant::now() + Duration::from_secs(60);
            // A worker running more than MAX_TRANSFERS: no polling.
            let busy = WorkerMetrics::default();
            busy.add(Metric::TftpTransfersActive, MAX_TRANSFERS as u64 + 1);
            let mut poll = BusyPoll::new(Duration::from_secs(30));
            let began = Instant::now();
            assert!(poll.poll(&mut inlet, &pool, &busy, far, &cut).await.is_none());
            assert!(began.elapsed() < Duration::from_secs(1));
            // A client whose answer took longer than the budget: the next wait sleeps at once.
            poll.since = Some(Instant::now() - Duration::from_secs(31));
            poll.answered();
            let began = Instant::now();
            assert!(poll.poll(&mut inlet, &pool, &metrics, far, &cut).await.is_none());
            assert!(began.elapsed() < Duration::from_secs(1));
            // Its next answer, within the budget, turns polling back on.
            client.send(b"ack!").unwrap();
            poll.answered();
            assert!(poll.poll(&mut inlet, &pool, &metrics, far, &cut).await.is_some());
            // Zero turns it off.
            client.send(b"ack!").unwrap();
            let mut off = BusyPoll::new(Duration::ZERO);
            assert!(off.poll(&mut inlet, &pool, &metrics, far, &cut).await.is_none());
            // A cut ends polling at once.
            let mut poll = BusyPoll::new(Duration::from_secs(30));
            let (left, _) =
                poll.poll(&mut inlet, &pool, &metrics, far, &cut).await.expect("the datagram left waiting");
            assert_eq!(left.unwrap().len, 4);
            cut.raise();
            let began = Instant::now();
            assert!(poll.poll(&mut inlet, &pool, &metrics, far, &cut).await.is_none());
            assert!(began.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn the_rings_other_operations_go_on_while_a_transfer_polls() {
        // A client that always answers within the budget keeps the transfer polling; a disk
        // read another task puts on the worker's ring must still be submitted and complete
        // while it does, not when the client stops.
        const CAP: u32 = 20_000;
        tokio_uring::start(async {
            let (mut inlet, client) = pair();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sender = {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = client.send(b"ack!");
                        std::thread::sleep(Duration::from_micros(50));
                    }
                })
            };
            let polled = Rc::new(std::cell::Cell::new(0u32));
            let poller = {
                let polled = Rc::clone(&polled);
                tokio_uring::spawn(async move {
                    let (pool, metrics, cut) = kit();
                    let mut poll = BusyPoll::new(Duration::from_millis(500));
                    let far = Instant::now() + Duration::from_secs(60);
                    while polled.get() < CAP {
                        let Some((_, buf)) = poll.poll(&mut inlet, &pool, &metrics, far, &cut).await else {
                            break;
                        };
                        polled.set(polled.get() + 1);
                        poll.answered();
                        pool.give(buf);
                    }
                })
            };
            // Let the poller start before the read is queued.
            while polled.get() < 10 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let file: crate::io::ring::ops::SharedFd =
                Rc::new(OwnedFd::from(std::fs::File::open("/proc/self/stat").unwrap()));
            let (res, _) = crate::io::ring::ops::read_at(&file, Vec::with_capacity(512), 0).await;
            let when = polled.get();
            res.expect("the read");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            sender.join().unwrap();
            poller.await.unwrap();
            assert!(when < CAP, "the read waited until the poller stopped");
        });
    }
}
