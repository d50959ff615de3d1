//! Splice vs sendfile for binary FTP downloads: sends one large warm-cache file over
//! loopback with each zero-copy path in the same run and prints throughput and the
//! process CPU time spent (the receiver's share is measured separately and subtracted).
//!
//! `cargo bench --bench zerocopy -- [SIZE_MIB] [ROUNDS]` (defaults 1024 and 3); run any
//! other way (as `cargo test --all-targets` does) it does one 16 MiB smoke round.

use ferry::io::ring::zerocopy::{
    send_file, shared, AbortHandle, DataConn, PipePool, TransferLimits, ZeroCopy,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

fn cpu_time(who: i32) -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Run {
    secs: f64,
    server_cpu: f64,
}

fn one(mode: ZeroCopy, path: &std::path::Path, size: u64) -> Run {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let before = cpu_time(libc::RUSAGE_THREAD);
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => panic!("{e}"),
            }
        }
        (total, cpu_time(libc::RUSAGE_THREAD) - before)
    });
    let (sock, _) = l.accept().unwrap();
    sock.set_nonblocking(true).unwrap();
    let file: OwnedFd = std::fs::File::open(path).unwrap().into();
    let before = cpu_time(libc::RUSAGE_SELF);
    let t = Instant::now();
    let sent = tokio_uring::start(async move {
        let (sock, file) = (shared(OwnedFd::from(sock)), shared(file));
        let pipes = PipePool::new(4, 1 << 20);
        let abort = AbortHandle::default();
        let limits = TransferLimits { stall_timeout: Duration::from_secs(30), rate_bps: 0 };
        let conn = DataConn::new(&sock, &pipes, limits, &abort);
        send_file(&conn, mode, &file, 0, size).await.unwrap()
    });
    let (got, receiver_cpu) = receiver.join().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!((sent, got), (size, size));
    // Process CPU includes io-wq workers; the receiver thread's own time is taken out.
    let server_cpu = (cpu_time(libc::RUSAGE_SELF) - before).as_secs_f64() - receiver_cpu.as_secs_f64();
    Run { secs, server_cpu }
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and gets the smoke
    // round so the suite keeps this working without a 1 GiB run.
    let smoke = all.iter().any(|a| a == "--smoke") || !all.iter().any(|a| a == "--bench");
    let args: Vec<String> = all.into_iter().filter(|a| a != "--bench").collect();
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let size_mib = if smoke { 16 } else { nums.first().copied().unwrap_or(1024) };
    let rounds = if smoke { 1 } else { nums.get(1).copied().unwrap_or(3) };
    let size = size_mib << 20;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..size_mib {
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
    // Warm the page cache.
    std::io::copy(&mut std::fs::File::open(f.path()).unwrap(), &mut std::io::sink()).unwrap();
    println!("| path | MiB | best MB/s | median MB/s | server CPU s (median) |");
    println!("|---|---|---|---|---|");
    // Rounds alternate the two paths so background load hits both alike.
    let modes = [ZeroCopy::Splice, ZeroCopy::Sendfile];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, mode) in modes.iter().enumerate() {
            runs[i].push(one(*mode, f.path(), size));
        }
    }
    for (mode, mut runs) in modes.into_iter().zip(runs) {
        runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let mbps = |r: &Run| size as f64 / r.secs / 1e6;
        let mid = &runs[runs.len() / 2];
        println!(
            "| {mode:?} | {size_mib} | {:.0} | {:.0} | {:.3} |",
            mbps(&runs[0]),
            mbps(mid),
            mid.server_cpu
        );
    }
}
