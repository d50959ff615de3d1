//! Counters and gauges for Prometheus. Each worker owns one cache-line-aligned block of
//! atomics that only it writes (Relaxed, no locks, no sharing on the hot path); a scrape
//! sums the blocks and renders the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Every metric Ferry keeps. The discriminant indexes the per-worker array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Metric {
    /// FTP control connections open.
    FtpSessionsActive,
    /// FTP control connections accepted.
    FtpSessionsTotal,
    /// FTP connections refused by session limits (421).
    FtpSessionsRefused,
    /// Failed FTP logins.
    FtpLoginFailures,
    /// FTP logins refused (421) because the password verifier was busy; not failures.
    FtpLoginsRefusedBusy,
    /// FTP data transfers running.
    FtpTransfersActive,
    /// FTP transfers completed.
    FtpTransfersCompleted,
    /// FTP transfers aborted or failed.
    FtpTransfersFailed,
    /// FTP bytes sent on data connections.
    FtpBytesSent,
    /// FTP bytes received on data connections.
    FtpBytesReceived,
    /// TFTP transfers running.
    TftpTransfersActive,
    /// TFTP transfers completed.
    TftpTransfersCompleted,
    /// TFTP transfers failed.
    TftpTransfersFailed,
    /// TFTP requests refused (busy, rate limit, access, not found).
    TftpRequestsRefused,
    /// TFTP payload bytes sent.
    TftpBytesSent,
    /// TFTP payload bytes received.
    TftpBytesReceived,
    /// TFTP DATA/OACK retransmissions.
    TftpRetransmissions,
    /// TFTP datagrams sent by transfers (first sends and retransmissions).
    TftpDatagramsSent,
    /// TFTP OACKs the client declined with ERROR 8 before any data (UEFI size probes).
    TftpOptionProbes,
    /// TFTP reads served from the file cache.
    TftpCacheHits,
    /// TFTP octet reads of cacheable size served from the file (not cached yet, or no room).
    TftpCacheMisses,
    /// FTP connections refused: `ftp.limits.max_sessions` reached.
    FtpRefusedSessions,
    /// FTP connections refused: `ftp.limits.max_sessions_per_ip` reached.
    FtpRefusedSessionsPerIp,
    /// TFTP requests refused: `tftp.max_transfers` reached.
    TftpRefusedTransfers,
    /// TFTP requests refused: the client's request rate.
    TftpRefusedRate,
    /// FTP passive listeners open (each holds one port of `ftp.passive.ports`).
    FtpPassivePortsInUse,
    /// PASV/EPSV refused: the client address holds `ftp.passive.max_ports_per_ip`.
    FtpRefusedPassivePerIp,
    /// PASV/EPSV refused: no port of `ftp.passive.ports` could be bound.
    FtpRefusedPassivePorts,
    /// FTPS (PROT P) transfers whose data the kernel's TLS protected.
    FtpTlsTransfersKernel,
    /// FTPS (PROT P) transfers whose data rustls protected in user space.
    FtpTlsTransfersUserSpace,
}

struct Desc {
    name: &'static str,
    labels: &'static str,
    help: &'static str,
    kind: Kind,
}

const fn d(name: &'static str, labels: &'static str, help: &'static str, kind: Kind) -> Desc {
    Desc { name, labels, help, kind }
}

/// Indexed by `Metric as usize`; several entries may share a name with different labels.
const DESCS: [Desc; 30] = [
    d("ferry_ftp_sessions_active", "", "FTP control connections open.", Kind::Gauge),
    d("ferry_ftp_sessions_total", "", "FTP control connections accepted.", Kind::Counter),
    d("ferry_errors_total", "kind=\"ftp_session_limit\"", "Errors by kind.", Kind::Counter),
    d("ferry_ftp_login_failures_total", "", "Failed FTP logins.", Kind::Counter),
    d(
        "ferry_ftp_logins_refused_busy_total",
        "",
        "FTP logins refused with 421 because the password verifier was busy (not failed logins).",
        Kind::Counter,
    ),
    d("ferry_transfers_active", "proto=\"ftp\"", "Transfers running.", Kind::Gauge),
    d("ferry_transfers_total", "proto=\"ftp\",outcome=\"complete\"", "Transfers finished.", Kind::Counter),
    d("ferry_transfers_total", "proto=\"ftp\",outcome=\"failed\"", "Transfers finished.", Kind::Counter),
    d("ferry_bytes_sent_total", "proto=\"ftp\"", "Payload bytes sent.", Kind::Counter),
    d("ferry_bytes_received_total", "proto=\"ftp\"", "Payload bytes received.", Kind::Counter),
    d("ferry_transfers_active", "proto=\"tftp\"", "Transfers running.", Kind::Gauge),
    d("ferry_transfers_total", "proto=\"tftp\",outcome=\"complete\"", "Transfers finished.", Kind::Counter),
    d("ferry_transfers_total", "proto=\"tftp\",outcome=\"failed\"", "Transfers finished.", Kind::Counter),
    d("ferry_errors_total", "kind=\"tftp_request_refused\"", "Errors by kind.", Kind::Counter),
    d("ferry_bytes_sent_total", "proto=\"tftp\"", "Payload bytes sent.", Kind::Counter),
    d("ferry_bytes_received_total", "proto=\"tftp\"", "Payload bytes received.", Kind::Counter),
    d("ferry_tftp_retransmissions_total", "", "TFTP DATA/OACK retransmissions.", Kind::Counter),
    d(
        "ferry_tftp_datagrams_sent_total",
        "",
        "TFTP datagrams sent by transfers, retransmissions included (the ratio's denominator).",
        Kind::Counter,
    ),
    d(
        "ferry_tftp_option_probes_total",
        "",
        "TFTP OACKs declined with ERROR 8 before any data (size probes).",
        Kind::Counter,
    ),
    d("ferry_tftp_cache_lookups_total", "result=\"hit\"", CACHE_LOOKUPS, Kind::Counter),
    d("ferry_tftp_cache_lookups_total", "result=\"miss\"", CACHE_LOOKUPS, Kind::Counter),
    d("ferry_refusals_total", "proto=\"ftp\",reason=\"sessions\"", REFUSALS, Kind::Counter),
    d("ferry_refusals_total", "proto=\"ftp\",reason=\"sessions_per_ip\"", REFUSALS, Kind::Counter),
    d("ferry_refusals_total", "proto=\"tftp\",reason=\"transfers\"", REFUSALS, Kind::Counter),
    d("ferry_refusals_total", "proto=\"tftp\",reason=\"rate\"", REFUSALS, Kind::Counter),
    d("ferry_ftp_passive_ports_in_use", "", "FTP passive listeners open, one port each.", Kind::Gauge),
    d("ferry_refusals_total", "proto=\"ftp\",reason=\"passive_per_ip\"", REFUSALS, Kind::Counter),
    d("ferry_refusals_total", "proto=\"ftp\",reason=\"passive_ports\"", REFUSALS, Kind::Counter),
    d("ferry_ftp_tls_transfers_total", "path=\"kernel\"", TLS_PATHS, Kind::Counter),
    d("ferry_ftp_tls_transfers_total", "path=\"user-space\"", TLS_PATHS, Kind::Counter),
];

const TLS_PATHS: &str =
    "FTPS (PROT P) transfers by where their data was encrypted: kernel TLS or user space (rustls).";

const REFUSALS: &str = "Connections and requests refused by a limit, by reason.";
const CACHE_LOOKUPS: &str =
    "TFTP octet reads of files within tftp.cache_max_file_bytes, by whether memory had them.";

/// One worker's block of values; aligned so two workers never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerMetrics {
    values: [AtomicU64; DESCS.len()],
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics { values: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl WorkerMetrics {
    /// Adds `n` to a counter or gauge.
    pub fn add(&self, m: Metric, n: u64) {
        self.values[m as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self, m: Metric) {
        self.add(m, 1);
    }

    /// Subtracts one from a gauge.
    pub fn dec(&self, m: Metric) {
        self.values[m as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// A gauge's or counter's value on this worker.
    pub fn value(&self, m: Metric) -> i64 {
        self.get(m as usize)
    }

    fn get(&self, i: usize) -> i64 {
        // Gauges go up and down on the same worker; a transient negative sum is impossible
        // per worker, but read as signed to be safe.
        self.values[i].load(Ordering::Relaxed) as i64
    }
}

/// All workers' blocks.
#[derive(Debug)]
pub struct Metrics {
    workers: Vec<WorkerMetrics>,
    /// Ports in `ftp.passive.ports` (0 without FTP): the free count is this minus those in use.
    passive_ports: AtomicU64,
    /// Bytes the server-wide TFTP file cache holds (kept by the cache itself).
    pub tftp_cache_bytes: Arc<AtomicU64>,
}

/// Raises a gauge of one worker until dropped (an open session, a running transfer, a
/// passive listener); owned, so it can travel with what it counts.
#[derive(Debug)]
pub struct HeldGauge {
    metrics: Arc<Metrics>,
    worker: usize,
    metric: Metric,
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.metrics.worker(self.worker).dec(self.metric);
    }
}

impl Metrics {
    /// Blocks for `workers` workers.
    pub fn new(workers: usize) -> Metrics {
        let workers = (0..workers.max(1)).map(|_| WorkerMetrics::default()).collect();
        Metrics { workers, passive_ports: AtomicU64::new(0), tftp_cache_bytes: Arc::default() }
    }

    /// Raises `metric` on `worker` until the returned guard drops.
    pub fn hold(self: &Arc<Self>, worker: usize, metric: Metric) -> HeldGauge {
        self.worker(worker).inc(metric);
        HeldGauge { metrics: Arc::clone(self), worker, metric }
    }

    /// The size of the passive port range, for `ferry_ftp_passive_ports_free`.
    pub fn set_passive_ports(&self, ports: u64) {
        self.passive_ports.store(ports, Ordering::Relaxed);
    }

    /// Worker `id`'s block (ids beyond the count share the last one rather than panic).
    pub fn worker(&self, id: usize) -> &WorkerMetrics {
        &self.workers[id.min(self.workers.len() - 1)]
    }

    /// Sum over workers.
    pub fn total(&self, m: Metric) -> i64 {
        self.workers.iter().map(|w| w.get(m as usize)).sum()
    }

    /// Prometheus text exposition (version 0.0.4): per-worker series and `worker="all"`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut described: Vec<&str> = Vec::new();
        for desc in DESCS.iter() {
            if !described.contains(&desc.name) {
                described.push(desc.name);
                let kind = if desc.kind == Kind::Counter { "counter" } else { "gauge" };
                let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", desc.name, desc.help, desc.name);
                // All series of one name are written together, as the format requires.
                for (j, same) in DESCS.iter().enumerate().filter(|(_, x)| x.name == desc.name) {
                    self.render_series(&mut out, j, same);
                }
            }
        }
        // Free ports are a server-wide fact (workers share the range), so only `all`.
        let in_use = self.total(Metric::FtpPassivePortsInUse).max(0) as u64;
        let free = self.passive_ports.load(Ordering::Relaxed).saturating_sub(in_use);
        let _ = writeln!(
            out,
            "# HELP ferry_ftp_passive_ports_free Ports of ftp.passive.ports no passive listener of ours holds.\n\
             # TYPE ferry_ftp_passive_ports_free gauge\nferry_ftp_passive_ports_free{{worker=\"all\"}} {free}"
        );
        // The cache is server-wide too.
        let cached = self.tftp_cache_bytes.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ferry_tftp_cache_bytes Bytes of files the TFTP file cache holds (in the cache or in use).\n\
             # TYPE ferry_tftp_cache_bytes gauge\nferry_tftp_cache_bytes{{worker=\"all\"}} {cached}"
        );
        out
    }

    fn render_series(&self, out: &mut String, index: usize, desc: &Desc) {
        let sep = if desc.labels.is_empty() { "" } else { "," };
        let mut total = 0i64;
        for (w, block) in self.workers.iter().enumerate() {
            let v = block.get(index);
            total += v;
            let _ = writeln!(out, "{}{{worker=\"{w}\"{sep}{}}} {v}", desc.name, desc.labels);
        }
        let _ = writeln!(out, "{}{{worker=\"all\"{sep}{}}} {total}", desc.name, desc.labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_count_separately_and_sum_in_the_total() {
        let m = Arc::new(Metrics::new(2));
        m.worker(0).add(Metric::FtpBytesSent, 100);
        m.worker(1).add(Metric::FtpBytesSent, 23);
        {
            let _g = m.hold(1, Metric::FtpSessionsActive);
            assert_eq!(m.total(Metric::FtpSessionsActive), 1);
        }
        assert_eq!(m.total(Metric::FtpSessionsActive), 0);
        assert_eq!(m.total(Metric::FtpBytesSent), 123);
        let text = m.render();
        assert!(text.contains("ferry_bytes_sent_total{worker=\"0\",proto=\"ftp\"} 100"), "{text}");
        assert!(text.contains("ferry_bytes_sent_total{worker=\"all\",proto=\"ftp\"} 123"), "{text}");
        assert!(text.contains("ferry_ftp_sessions_active{worker=\"all\"} 0"), "{text}");
    }

    #[test]
    fn each_name_is_described_once_and_its_series_are_contiguous() {
        let text = Metrics::new(3).render();
        let mut seen_names = Vec::new();
        let mut last = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!seen_names.contains(&name.to_string()), "{name} described twice");
                seen_names.push(name.to_string());
                last = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(last), "series {line} outside its block {last}");
            }
        }
        let mut names: Vec<&str> = DESCS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        // Plus the free passive ports and the file cache's bytes, server-wide at render time.
        assert_eq!(seen_names.len(), names.len() + 2, "every name described once: {seen_names:?}");
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<WorkerMetrics>() >= 128);
    }
}
