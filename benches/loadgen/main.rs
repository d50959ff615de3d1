//! `ferry-loadgen`: the benchmark load generator. FTP download, upload and idle-session
//! scenarios and TFTP read scenarios, run with bounded concurrency and count or duration;
//! prints a table and writes JSON that `benches/compare.sh` turns into the comparison.

mod ftp;
mod hash;
mod minisrv;
mod report;
mod run;
mod selftest;
mod tftp;
mod tls;

use clap::{Args, Parser, Subcommand};
use report::{Json, Report};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load generator for Ferry and the reference FTP/TFTP servers (loopback only by intent).
#[derive(Parser)]
#[command(name = "ferry-loadgen", version)]
struct Cli {
    /// Client threads, each with its own runtime (default: available CPUs).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Write the JSON report to this file (`-` = stdout instead of the table).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Label for the server under test, copied into the report.
    #[arg(long, global = true, default_value = "server")]
    target: String,
    /// Exit 1 when any transfer failed.
    #[arg(long, global = true)]
    fail_on_error: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// FTP download sessions: connect, login, TYPE I, N x (EPSV|PASV|PORT + RETR), QUIT.
    FtpGet(FtpGet),
    /// FTP upload sessions: connect, login, TYPE I, STOR of --size bytes, QUIT.
    FtpPut(FtpPut),
    /// Open --sessions logged-in sessions, hold them, check each answers NOOP, release.
    FtpIdle(FtpIdle),
    /// TFTP read requests with options, loss simulation and content checks.
    TftpGet(TftpGet),
    /// Run every scenario against in-process mini servers and check the results.
    SelfTest,
}

#[derive(Args, Clone)]
struct Load {
    /// Concurrent clients.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Total units (sessions for FTP, transfers for TFTP); default: one per client.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Stop starting new units after this many seconds.
    #[arg(long, short = 'd')]
    duration: Option<f64>,
}

#[derive(Args, Clone)]
struct Login {
    /// FTP server address (host:port).
    #[arg(long)]
    addr: String,
    #[arg(long, default_value = "anonymous")]
    user: String,
    #[arg(long, default_value = "loadgen@")]
    pass: String,
    /// How data connections are made.
    #[arg(long, value_enum, default_value = "epsv")]
    mode: ftp::DataMode,
    /// Seconds to wait for any single network step.
    #[arg(long, default_value_t = 30.0)]
    io_timeout: f64,
    /// FTPS: `explicit` (AUTH TLS) or `implicit` (TLS from the start); then PBSZ 0, PROT P.
    #[arg(long, value_enum)]
    tls: Option<tls::TlsMode>,
    /// TLS versions offered with --tls.
    #[arg(long, value_enum, default_value = "any")]
    tls_version: tls::TlsVersion,
}

#[derive(Args, Clone)]
struct Expect {
    /// Expected size in bytes (K/M/G suffixes are binary).
    #[arg(long, value_parser = parse_size)]
    expect_size: Option<u64>,
    /// Reference file: expected size and content digest are taken from it.
    #[arg(long)]
    expect_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct FtpGet {
    #[command(flatten)]
    login: Login,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    expect: Expect,
    /// Remote path (`{n}` = sequence number, `{t}` = task id).
    #[arg(long)]
    path: String,
    /// RETRs per session.
    #[arg(long, default_value_t = 1)]
    retrs_per_session: u32,
    /// Read buffer per client.
    #[arg(long, value_parser = parse_size, default_value = "256K")]
    buf_size: u64,
}

#[derive(Args, Clone)]
struct FtpPut {
    #[command(flatten)]
    login: Login,
    #[command(flatten)]
    load: Load,
    /// Remote path template; must be unique per upload, e.g. `upload/f-{n}`.
    #[arg(long)]
    path: String,
    /// Bytes per upload.
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// After each STOR ask SIZE and compare.
    #[arg(long)]
    check_size: bool,
    /// Write buffer per client.
    #[arg(long, value_parser = parse_size, default_value = "256K")]
    buf_size: u64,
}

#[derive(Args, Clone)]
struct FtpIdle {
    #[command(flatten)]
    login: Login,
    /// Sessions to open.
    #[arg(long)]
    sessions: usize,
    /// Sessions being opened at once.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Created (with the accepted count) once all sessions are open, for memory sampling.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct TftpGet {
    /// TFTP server address (host:port).
    #[arg(long)]
    addr: String,
    #[arg(long)]
    path: String,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    expect: Expect,
    /// Requested block size (RFC 2348); omit for plain 512-byte blocks.
    #[arg(long)]
    blksize: Option<u16>,
    /// Requested window (RFC 7440); omit for lock-step.
    #[arg(long)]
    windowsize: Option<u16>,
    /// Ask for tsize (RFC 2349) and check it.
    #[arg(long)]
    tsize: bool,
    /// Ask the server for this retransmission timeout, seconds (RFC 2349).
    #[arg(long)]
    timeout_opt: Option<u8>,
    /// Client retransmission timeout, milliseconds.
    #[arg(long, default_value_t = 1000)]
    retransmit_ms: u64,
    /// Re-sends before a transfer fails.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Share of received DATA packets to drop (0.0 - 1.0).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Receive with UDP_GRO: a server's UDP GSO send arrives as one buffer, as it would
    /// through a NIC with segmentation offload, instead of being cut up in software by
    /// loopback. Datagrams sent one by one arrive one by one either way.
    #[arg(long)]
    gro: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `123`, `4K`, `16M`, `1G` (binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mult).map_err(|e| format!("bad size {s:?}: {e}"))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl Expect {
    fn resolve(&self) -> Result<(Option<u64>, Option<u64>), String> {
        match &self.expect_file {
            Some(p) => {
                let (len, digest) =
                    hash::hash_file(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                Ok((Some(len), Some(digest)))
            }
            None => Ok((self.expect_size, None)),
        }
    }
}

impl Load {
    fn budget(&self) -> Arc<run::Budget> {
        let count = self.count.or(if self.duration.is_none() { Some(self.concurrency as u64) } else { None });
        Arc::new(run::Budget::new(count, self.duration.map(secs)))
    }
}

fn ftp_cfg(login: &Login, path: &str, buf: u64) -> Result<ftp::FtpCfg, String> {
    Ok(ftp::FtpCfg {
        addr: resolve(&login.addr)?,
        user: login.user.clone(),
        pass: login.pass.clone(),
        mode: login.mode,
        path: path.to_string(),
        retrs_per_session: 1,
        expect_len: None,
        expect_hash: None,
        io_timeout: secs(login.io_timeout),
        buf_size: buf.clamp(4096, 16 << 20) as usize,
        upload_size: 0,
        check_size: false,
        tls: match login.tls {
            Some(mode) => Some(Arc::new(tls::ClientTls::new(mode, login.tls_version)?)),
            None => None,
        },
    })
}

/// Runs one scenario and measures it (wall time and this process's CPU time).
fn run_scenario(scenario: &Scenario, threads: usize, target: &str) -> Result<Report, String> {
    let cpu0 = report::cpu_seconds();
    let t0 = Instant::now();
    let (name, concurrency, stats, extra) = match scenario {
        Scenario::FtpGet(a) => {
            let mut cfg = ftp_cfg(&a.login, &a.path, a.buf_size)?;
            (cfg.expect_len, cfg.expect_hash) = a.expect.resolve()?;
            cfg.retrs_per_session = a.retrs_per_session.max(1);
            let (cfg, budget) = (Arc::new(cfg), a.load.budget());
            let stats = run::run_tasks(threads, a.load.concurrency, move |t| {
                ftp::session_task(t, Arc::clone(&cfg), Arc::clone(&budget), ftp::Direction::Download)
            });
            ("ftp-get", a.load.concurrency, stats, vec![])
        }
        Scenario::FtpPut(a) => {
            let mut cfg = ftp_cfg(&a.login, &a.path, a.buf_size)?;
            cfg.upload_size = a.size;
            cfg.check_size = a.check_size;
            let (cfg, budget) = (Arc::new(cfg), a.load.budget());
            let stats = run::run_tasks(threads, a.load.concurrency, move |t| {
                ftp::session_task(t, Arc::clone(&cfg), Arc::clone(&budget), ftp::Direction::Upload)
            });
            ("ftp-put", a.load.concurrency, stats, vec![])
        }
        Scenario::FtpIdle(a) => {
            let cfg = Arc::new(ftp_cfg(&a.login, "", 4096)?);
            let idle = Arc::new(ftp::Idle::new(a.sessions, secs(a.hold), a.ready_file.clone()));
            let shared = Arc::clone(&idle);
            let conc = a.concurrency.clamp(1, a.sessions.max(1));
            let stats =
                run::run_tasks(threads, conc, move |_| ftp::idle_task(Arc::clone(&cfg), Arc::clone(&shared)));
            ("ftp-idle", conc, stats, idle.extra())
        }
        Scenario::TftpGet(a) => {
            let (expect_len, expect_hash) = a.expect.resolve()?;
            let cfg = Arc::new(tftp::TftpCfg {
                addr: resolve(&a.addr)?,
                path: a.path.clone(),
                blksize: a.blksize,
                windowsize: a.windowsize,
                tsize: a.tsize,
                timeout_opt: a.timeout_opt,
                retransmit: Duration::from_millis(a.retransmit_ms.max(1)),
                retries: a.retries,
                loss: a.loss.clamp(0.0, 0.99),
                gro: a.gro,
                expect_len,
                expect_hash,
                seed: a.seed,
            });
            let budget = a.load.budget();
            let stats = run::run_tasks(threads, a.load.concurrency, move |t| {
                tftp::get_task(t, Arc::clone(&cfg), Arc::clone(&budget))
            });
            ("tftp-get", a.load.concurrency, stats, vec![])
        }
        Scenario::SelfTest => return Err("self-test is not a single scenario".into()),
    };
    let elapsed = t0.elapsed();
    let cpu1 = report::cpu_seconds();
    Ok(Report {
        scenario: name.into(),
        target: target.into(),
        concurrency,
        threads,
        elapsed,
        cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        stats,
        extra,
    })
}

fn raise_fd_limit() {
    // Thousands of sessions need thousands of descriptors; take the hard limit we are given.
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_fd_limit();
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Scenario::SelfTest = cli.scenario {
        return match selftest::run(threads) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("self-test failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut report = match run_scenario(&cli.scenario, threads, &cli.target) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let failed = report.stats.failed();
    let json: Json = report.json();
    match cli.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            print!("{}", report::table(&json));
            if let Err(e) = std::fs::write(p, format!("{json}\n")) {
                eprintln!("ferry-loadgen: cannot write {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
        None => print!("{}", report::table(&json)),
    }
    if cli.fail_on_error && failed > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
