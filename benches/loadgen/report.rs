//! What a run measured and how it is printed: per-task statistics merged into one report,
//! errors counted by kind, latency percentiles, the load generator's own CPU time, and a
//! tiny JSON writer (the crate has no JSON dependency and the output is flat).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

/// Why one transfer or session failed; `kind()` is the key errors are counted by.
#[derive(Debug)]
pub enum Failure {
    /// TCP connect or UDP setup failed.
    Connect(std::io::Error),
    /// No answer within the per-operation timeout.
    Timeout(&'static str),
    /// The server answered a command with an unexpected reply code.
    Reply { cmd: &'static str, code: u16, text: String },
    /// The server's bytes did not follow the protocol.
    Protocol(String),
    /// Fewer or more bytes than expected.
    Length { want: u64, got: u64 },
    /// The content digest differs from the reference file's.
    Hash,
    /// A socket error mid-transfer.
    Io(std::io::Error),
    /// The TFTP server sent an ERROR packet.
    Tftp { code: u16, text: String },
    /// A TLS handshake or record failed (FTPS).
    Tls(String),
}

impl Failure {
    /// The bucket this failure is counted in.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(_) => "connect".into(),
            Failure::Timeout(what) => format!("timeout-{what}"),
            Failure::Reply { cmd, code, .. } => format!("reply-{cmd}-{code}"),
            Failure::Protocol(_) => "protocol".into(),
            Failure::Length { .. } => "length".into(),
            Failure::Hash => "hash".into(),
            Failure::Io(e) => format!("io-{:?}", e.kind()),
            Failure::Tftp { code, .. } => format!("tftp-error-{code}"),
            Failure::Tls(_) => "tls".into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Timeout(what) => write!(f, "timeout waiting for {what}"),
            Failure::Reply { cmd, code, text } => write!(f, "{cmd} answered {code} {text}"),
            Failure::Protocol(s) => write!(f, "protocol: {s}"),
            Failure::Length { want, got } => write!(f, "expected {want} bytes, got {got}"),
            Failure::Hash => write!(f, "content differs from the reference file"),
            Failure::Io(e) => write!(f, "io: {e}"),
            Failure::Tftp { code, text } => write!(f, "TFTP ERROR {code}: {text}"),
            Failure::Tls(s) => write!(f, "TLS: {s}"),
        }
    }
}

/// Counters one task keeps privately and merges at the end (no sharing on the hot path).
#[derive(Default)]
pub struct Stats {
    pub ok: u64,
    pub bytes: u64,
    /// TFTP: packets the client re-sent after a timeout (not failures).
    pub retransmits: u64,
    /// FTPS: data connection handshakes, and how many resumed the control session's.
    pub tls_data_handshakes: u64,
    pub tls_data_resumed: u64,
    /// Per transfer: from opening the data channel (or the request) to the final reply.
    pub latency_us: Vec<u64>,
    /// Per FTP session: connect to QUIT's reply.
    pub session_us: Vec<u64>,
    /// Per failed FTP session: connect to the failure. A server that leaves clients waiting
    /// in its accept queue shows there, not in `latency_us`.
    pub failed_session_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    /// The first few failure messages, for diagnosis.
    pub samples: Vec<String>,
}

impl Stats {
    /// Counts a failure.
    pub fn fail(&mut self, f: &Failure) {
        *self.errors.entry(f.kind()).or_default() += 1;
        if self.samples.len() < 5 {
            self.samples.push(f.to_string());
        }
    }

    /// Adds another task's counters.
    pub fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.bytes += o.bytes;
        self.retransmits += o.retransmits;
        self.tls_data_handshakes += o.tls_data_handshakes;
        self.tls_data_resumed += o.tls_data_resumed;
        self.latency_us.extend(o.latency_us);
        self.session_us.extend(o.session_us);
        self.failed_session_us.extend(o.failed_session_us);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }

    /// Number of failures of any kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// User and system CPU seconds of this process so far.
pub fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// Latency summary in milliseconds: (p50, p99, max); zeros when empty.
pub fn percentiles(us: &mut [u64]) -> (f64, f64, f64) {
    if us.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    us.sort_unstable();
    let at = |p: f64| us[((p * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1] as f64 / 1000.0;
    (at(0.50), at(0.99), us[us.len() - 1] as f64 / 1000.0)
}

/// A minimal JSON value.
pub enum Json {
    Int(i64),
    Num(f64),
    Str(String),
    Obj(Vec<(String, Json)>),
    Arr(Vec<Json>),
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Int(i) => write!(f, "{i}"),
            Json::Num(x) if x.is_finite() => write!(f, "{}", (x * 1000.0).round() / 1000.0),
            Json::Num(_) => f.write_str("null"),
            Json::Str(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('"')
            }
            Json::Arr(items) => {
                f.write_char('[')?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            Json::Obj(fields) => {
                f.write_char('{')?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {v}", Json::Str(k.clone()))?;
                }
                f.write_char('}')
            }
        }
    }
}

/// One scenario's result.
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub concurrency: usize,
    pub threads: usize,
    pub elapsed: Duration,
    pub cpu: (f64, f64),
    pub stats: Stats,
    /// Scenario-specific numbers (idle: requested, accepted, held, ...).
    pub extra: Vec<(String, Json)>,
}

impl Report {
    /// The report as one JSON object (one line).
    pub fn json(&mut self) -> Json {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let (p50, p99, max) = percentiles(&mut self.stats.latency_us);
        let (s50, s99, smax) = percentiles(&mut self.stats.session_us);
        let mut attempts = [&self.stats.session_us[..], &self.stats.failed_session_us[..]].concat();
        let (a50, a99, amax) = percentiles(&mut attempts);
        let s = &self.stats;
        let mut fields = vec![
            ("scenario".into(), Json::Str(self.scenario.clone())),
            ("target".into(), Json::Str(self.target.clone())),
            ("concurrency".into(), Json::Int(self.concurrency as i64)),
            ("threads".into(), Json::Int(self.threads as i64)),
            ("ok".into(), Json::Int(s.ok as i64)),
            ("failed".into(), Json::Int(s.failed() as i64)),
            ("bytes".into(), Json::Int(s.bytes as i64)),
            ("retransmits".into(), Json::Int(s.retransmits as i64)),
            ("tls_data_handshakes".into(), Json::Int(s.tls_data_handshakes as i64)),
            ("tls_data_resumed".into(), Json::Int(s.tls_data_resumed as i64)),
            ("elapsed_s".into(), Json::Num(secs)),
            ("per_s".into(), Json::Num(s.ok as f64 / secs)),
            ("sessions_per_s".into(), Json::Num(s.session_us.len() as f64 / secs)),
            ("mb_per_s".into(), Json::Num(s.bytes as f64 / 1e6 / secs)),
            ("latency_ms".into(), obj(&[("p50", p50), ("p99", p99), ("max", max)])),
            ("session_ms".into(), obj(&[("p50", s50), ("p99", s99), ("max", smax)])),
            // Every session attempt, a failed one counted with its time to failure.
            ("attempt_ms".into(), obj(&[("p50", a50), ("p99", a99), ("max", amax)])),
            (
                "errors".into(),
                Json::Obj(s.errors.iter().map(|(k, v)| (k.clone(), Json::Int(*v as i64))).collect()),
            ),
            ("error_samples".into(), Json::Arr(s.samples.iter().cloned().map(Json::Str).collect())),
            (
                "loadgen_cpu_s".into(),
                obj(&[("user", self.cpu.0), ("sys", self.cpu.1), ("total", self.cpu.0 + self.cpu.1)]),
            ),
        ];
        fields.append(&mut self.extra);
        Json::Obj(fields)
    }
}

fn obj(fields: &[(&str, f64)]) -> Json {
    Json::Obj(fields.iter().map(|(k, v)| (k.to_string(), Json::Num(*v))).collect())
}

/// A human-readable table of the JSON object's top-level numbers.
pub fn table(json: &Json) -> String {
    let mut out = String::new();
    let Json::Obj(fields) = json else { return out };
    let _ = writeln!(out, "| metric | value |\n|---|---|");
    for (k, v) in fields {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentiles(&mut v), (50.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0, 0.0));
    }

    #[test]
    fn failed_sessions_count_in_attempts_only() {
        let mut stats = Stats { session_us: vec![1_000; 98], ..Stats::default() };
        stats.failed_session_us = vec![120_000_000; 2];
        let mut r = Report {
            scenario: "ftp-get".into(),
            target: "t".into(),
            concurrency: 1,
            threads: 1,
            elapsed: Duration::from_secs(1),
            cpu: (0.0, 0.0),
            stats,
            extra: Vec::new(),
        };
        let text = r.json().to_string();
        assert!(text.contains(r#""session_ms": {"p50": 1, "p99": 1, "max": 1}"#), "{text}");
        assert!(text.contains(r#""attempt_ms": {"p50": 1, "p99": 120000, "max": 120000}"#), "{text}");
    }

    #[test]
    fn json_escapes_strings() {
        let j = Json::Obj(vec![("a\"b".into(), Json::Str("x\ny".into())), ("n".into(), Json::Num(1.23456))]);
        assert_eq!(j.to_string(), r#"{"a\"b": "x\u000ay", "n": 1.235}"#);
    }
}
