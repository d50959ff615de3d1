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
pub const MAX_REQUEST: usize = 8192;

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
    let Some(head) = read_head(&mut stream)? else {
        return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "too large\n");
    };
    match parse_request(&head) {
        Route::Metrics => respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &metrics.render()),
        Route::Healthz => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        Route::Sessions => {
            let report = sessions.collect(ANSWER_WITHIN);
            let body = serde_json::to_string(&report).map_err(std::io::Error::other)?;
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        Route::NotFound => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        Route::NotAllowed => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

/// Reads a request head: up to the blank line that ends it, or to the end of the stream;
/// `None` when more than [`MAX_REQUEST`] bytes came first (answer 431).
pub fn read_head(stream: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
    Ok(Some(head))
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`.
    Metrics,
    /// `GET /healthz`.
    Healthz,
    /// `GET /sessions`: the live session view, as JSON.
    Sessions,
    /// `GET` of anything else: 404.
    NotFound,
    /// Any other method, or no request line: 405.
    NotAllowed,
}

/// Routes a request head (everything read so far) by its first line: method and path are
/// its first two space-separated words; headers and body are never looked at.
pub fn parse_request(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    match (method, path) {
        (b"GET", b"/metrics") => Route::Metrics,
        (b"GET", b"/healthz") => Route::Healthz,
        (b"GET", b"/sessions") => Route::Sessions,
        (b"GET", _) => Route::NotFound,
        _ => Route::NotAllowed,
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
