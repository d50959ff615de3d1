//! The live session view: the plain snapshot of a running session or transfer, how the
//! metrics thread gathers them from the workers, and how `ferry sessions` fetches and shows them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One FTP session or TFTP transfer as seen at the moment of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// `ftp` or `tftp`.
    pub protocol: String,
    /// The client's address and port.
    pub client: String,
    /// The FTP login name; none before login and for TFTP.
    pub user: Option<String>,
    /// `idle`, or what runs: RETR, STOR, LIST (FTP), RRQ, WRQ (TFTP).
    pub state: String,
    /// The file (or listed directory) of the running transfer.
    pub file: Option<String>,
    /// Bytes of the running transfer so far (TFTP: acknowledged by the client).
    pub bytes: u64,
    /// `bytes` over the running transfer's time so far.
    pub rate_bps: u64,
    /// Seconds since the session (or TFTP transfer) started.
    pub age_secs: f64,
    /// The worker serving it.
    pub worker: usize,
}

/// What `/sessions` answers: the entries of every worker that answered in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Oldest first.
    pub sessions: Vec<SessionInfo>,
    /// Workers that did not answer within the bound; their entries are missing.
    pub workers_unanswered: Vec<usize>,
}

/// A request for one worker's snapshot: the worker answers with its id and entries. A std
/// channel, so the metrics thread can wait for the answers with a deadline.
pub type SnapshotRequest = mpsc::Sender<(usize, Vec<SessionInfo>)>;

/// The metrics thread's way to every worker's registry: message passing only, so no
/// session or transfer ever takes a lock for the view.
#[derive(Debug, Default)]
pub struct Snapshots {
    workers: Vec<tokio::sync::mpsc::Sender<SnapshotRequest>>,
}

/// Asks for a snapshot a worker may have waiting; more are refused at once.
pub const SNAPSHOT_QUEUE: usize = 4;

/// How long the view waits for the workers; one that is busier than this is left out.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

impl Snapshots {
    /// A gatherer over these workers' request channels (index = worker id).
    pub fn new(workers: Vec<tokio::sync::mpsc::Sender<SnapshotRequest>>) -> Snapshots {
        Snapshots { workers }
    }

    /// Asks every worker at once and waits up to `within` for all of them.
    pub fn collect(&self, within: Duration) -> Report {
        let (tx, rx) = mpsc::channel();
        // A worker whose channel is closed has ended, and one whose queue is full has not
        // answered the last few asks: both count as unanswered, and asks never pile up.
        let mut pending: BTreeSet<usize> = (0..self.workers.len()).collect();
        for (id, worker) in self.workers.iter().enumerate() {
            if worker.try_send(tx.clone()).is_err() {
                pending.remove(&id);
            }
        }
        let mut unanswered: BTreeSet<usize> =
            (0..self.workers.len()).filter(|id| !pending.contains(id)).collect();
        drop(tx);
        let deadline = Instant::now() + within;
        let mut sessions = Vec::new();
        while !pending.is_empty() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((id, list)) => {
                    pending.remove(&id);
                    sessions.extend(list);
                }
                Err(_) => break,
            }
        }
        unanswered.extend(pending);
        sessions.sort_by(|a, b| b.age_secs.total_cmp(&a.age_secs));
        Report { sessions, workers_unanswered: unanswered.into_iter().collect() }
    }
}

/// Fetches `/sessions` from the metrics endpoint at `listen` (a wildcard address is reached
/// on loopback).
pub fn fetch(listen: SocketAddr) -> Result<Report, String> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        let lo: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(lo);
    }
    let unreachable = |e: std::io::Error| {
        format!(
            "cannot reach the metrics endpoint at {addr}: {e} (is ferry running with this configuration?)"
        )
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(unreachable)?;
    // The server waits up to ANSWER_WITHIN for its workers.
    stream.set_read_timeout(Some(ANSWER_WITHIN + Duration::from_secs(4))).map_err(unreachable)?;
    stream.write_all(b"GET /sessions HTTP/1.0\r\n\r\n").map_err(unreachable)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(unreachable)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!(
            "the metrics endpoint at {addr} answered `{status}` to /sessions (an older ferry?)"
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("unreadable /sessions answer from {addr}: {e}"))
}

/// The view as a table: a header and one line per entry.
pub fn table(sessions: &[SessionInfo]) -> String {
    let header = ["PROTO", "CLIENT", "USER", "STATE", "FILE", "BYTES", "RATE", "AGE"].map(String::from);
    let rows: Vec<[String; 8]> = sessions
        .iter()
        .map(|s| {
            [
                s.protocol.clone(),
                s.client.clone(),
                s.user.clone().unwrap_or_else(|| "-".into()),
                s.state.clone(),
                s.file.clone().unwrap_or_else(|| "-".into()),
                s.bytes.to_string(),
                format!("{}/s", human_bytes(s.rate_bps)),
                human_age(s.age_secs),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// 1536 -> `1.5KiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// 3725 s -> `1h02m05s`.
fn human_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(age_secs: f64) -> SessionInfo {
        SessionInfo {
            protocol: "ftp".into(),
            client: "127.0.0.1:40000".into(),
            user: Some("alice".into()),
            state: "RETR".into(),
            file: Some("/big.bin".into()),
            bytes: 1536,
            rate_bps: 2048,
            age_secs,
            worker: 0,
        }
    }

    #[test]
    fn the_table_has_a_header_and_one_aligned_line_per_entry() {
        let text = table(&[entry(3725.0), SessionInfo { user: None, file: None, ..entry(5.0) }]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PROTO  CLIENT"), "{text}");
        assert!(
            lines[1].contains("alice") && lines[1].contains("2.0KiB/s") && lines[1].ends_with("1h02m05s")
        );
        assert!(lines[2].contains(" - "), "{text}");
        assert_eq!(lines[0].find("STATE"), lines[1].find("RETR"), "columns line up:\n{text}");
    }

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        assert_eq!(
            (human_bytes(0), human_bytes(1536), human_bytes(3 << 20)),
            ("0B".into(), "1.5KiB".into(), "3.0MiB".into())
        );
        assert_eq!((human_age(5.9), human_age(65.0)), ("5s".into(), "1m05s".into()));
    }

    #[test]
    fn collect_gathers_every_worker_and_names_those_that_did_not_answer() {
        let (a, mut a_rx) = tokio::sync::mpsc::channel::<SnapshotRequest>(SNAPSHOT_QUEUE);
        let (b, _b_rx) = tokio::sync::mpsc::channel(SNAPSHOT_QUEUE);
        let (c, c_rx) = tokio::sync::mpsc::channel::<SnapshotRequest>(SNAPSHOT_QUEUE);
        drop(c_rx);
        let answering = std::thread::spawn(move || {
            let reply: SnapshotRequest = a_rx.blocking_recv().unwrap();
            reply.send((0, vec![entry(1.0), entry(9.0)])).unwrap();
        });
        let report = Snapshots::new(vec![a, b, c]).collect(Duration::from_millis(300));
        answering.join().unwrap();
        assert_eq!(report.sessions.iter().map(|s| s.age_secs).collect::<Vec<_>>(), [9.0, 1.0]);
        assert_eq!(report.workers_unanswered, [1, 2]);
    }
}
