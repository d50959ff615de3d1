//! The metrics endpoint: a tiny HTTP/1.0 responder on its own thread (never a worker),
//! serving `GET /metrics` (Prometheus text), `GET /healthz` and `GET /sessions` (the live
//! session view, JSON). Off by default.

use super::metrics::Metrics;
use super::sessions::{Snapshots, ANSWER_WITHIN};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// Largest request head read; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8192;

/// Serves scrapes on `listener` until the process exits.
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>, sessions: Snapshots) -> std::io::Result<()> {
    std::thread::Builder::new().name("ferry-metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    if let Err(e) = answer(stream, &metrics, &sessions) {
                        debug!("metrics request failed: {e}");
                    }
                }
                Err(e) => {
                    warn!("metrics accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(())
}

fn answer(mut stream: TcpStream, metrics: &Metrics, sessions: &Snapshots) -> std::io::Result<()> {
    // One scraper at a time; a slow one cannot hold the thread for long.
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "too large\n");
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    match (method, path) {
        (b"GET", b"/metrics") => {
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &metrics.render())
        }
        (b"GET", b"/healthz") => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        (b"GET", b"/sessions") => {
            let report = sessions.collect(ANSWER_WITHIN);
            let body = serde_json::to_string(&report).map_err(std::io::Error::other)?;
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        (b"GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}
