//! FTPS data connections over the ring: the TLS handshake (which must resume the control
//! session), then user-space encryption: file bytes read into a pooled buffer, encrypted by
//! the sans-IO [`TlsConn`] and sent; uploads decrypted from received buffers. Only bytes move
//! here; every TLS rule is in `crate::tls`.
//!
//! The kernel path comes in after [`handshake`] (see `ktls`): where the kernel can take the
//! keys the plain zero-copy loops run instead, so the handshake then reads whole records only
//! and leaves everything after it in the socket for the kernel.

use super::crlf::{from_crlf, to_crlf};
use crate::io::ring::buf_pool::BufPool;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::sockets::{self, recv_some, send_all};
use crate::io::ring::zerocopy::{self, DataConn, Pacer};
use crate::tls::kernel::{record_body_len, RECORD_HEADER};
use crate::tls::{SessionTls, TlsConn};
use std::io;
use std::time::Duration;
use tracing::info;

/// Ciphertext rustls may hold between two sends: a pooled buffer's worth of records.
const SEND_BUFFER_LIMIT: usize = 512 * 1024;
/// How long a finished download waits for the client's close_notify or end of stream,
/// so the client reads the last record and the close_notify before the socket closes.
const LINGER: Duration = Duration::from_secs(2);

/// What a protected (PROT P) transfer needs from its control session.
#[derive(Debug, Clone)]
pub struct DataTls {
    /// The control session's TLS: only its sessions can be resumed.
    pub session: SessionTls,
    /// Refuse a data connection that does not resume (`ftp.tls.require_session_reuse`).
    pub require_reuse: bool,
}

/// Why a data connection's TLS could not start.
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake failed, timed out or the client went away.
    Failed(io::Error),
    /// The handshake finished without resuming the control session, which is required.
    NotResumed,
}

/// A data connection's TLS once the handshake is done, with plaintext that came with it.
pub struct DataStream {
    /// The connection.
    pub conn: TlsConn,
    /// Plaintext decrypted during the handshake (an upload's first bytes).
    pub early: Vec<u8>,
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Sends everything `conn` has queued.
async fn flush(sock: &SharedFd, conn: &mut TlsConn, out: &mut Vec<u8>, stall: Duration) -> io::Result<()> {
    out.clear();
    conn.take_ciphertext(out);
    if !out.is_empty() {
        *out = send_all(sock, std::mem::take(out), stall).await?;
    }
    Ok(())
}

fn closed_in_handshake() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the data connection during the TLS handshake")
}

/// Receives exactly `n` bytes (`Vec::with_capacity` gives exactly the capacity asked for,
/// and a receive fills at most that).
async fn recv_exact(sock: &SharedFd, n: usize, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let got = recv_some(sock, Vec::with_capacity(n - out.len()), timeout).await?;
        if got.is_empty() {
            return Err(closed_in_handshake());
        }
        out.extend_from_slice(&got);
    }
    debug_assert_eq!(out.len(), n, "a receive fills at most the capacity asked for");
    Ok(out)
}

/// Receives one whole TLS record, or just its header when that is not TLS (rustls then says
/// why, with an alert).
async fn recv_record(sock: &SharedFd, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut record = recv_exact(sock, RECORD_HEADER, timeout).await?;
    let header: [u8; RECORD_HEADER] = record[..]
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "short TLS record header"))?;
    if let Ok(len) = record_body_len(&header) {
        record.extend_from_slice(&recv_exact(sock, len, timeout).await?);
    }
    Ok(record)
}

/// Runs the server handshake on a data connection within `timeout` (each wait), and checks
/// that it resumed the control session when that is required. An `upload` gets no session
/// tickets (see `SessionTls::accept_upload`). With `whole_records` (the kernel may take the
/// connection's receiving over) it reads one record at a time, so no byte past the handshake
/// is taken from the socket.
pub async fn handshake(
    sock: &SharedFd,
    tls: &DataTls,
    timeout: Duration,
    upload: bool,
    whole_records: bool,
) -> Result<DataStream, HandshakeError> {
    let mut conn = if upload { tls.session.accept_upload() } else { tls.session.accept() };
    conn.set_buffer_limit(SEND_BUFFER_LIMIT);
    // Whole records come in buffers of their own; otherwise one 16 KiB buffer is reused.
    let first = if whole_records { Vec::new() } else { Vec::with_capacity(16 * 1024) };
    let (mut out, mut buf, mut early) = (Vec::new(), first, Vec::new());
    while conn.is_handshaking() {
        flush(sock, &mut conn, &mut out, timeout).await.map_err(HandshakeError::Failed)?;
        buf = if whole_records {
            recv_record(sock, timeout).await
        } else {
            recv_some(sock, buf, timeout).await
        }
        .map_err(HandshakeError::Failed)?;
        if buf.is_empty() {
            return Err(HandshakeError::Failed(closed_in_handshake()));
        }
        if let Err(e) = conn.feed(&buf, &mut early) {
            // The alert tells the client why; best effort.
            let _ = flush(sock, &mut conn, &mut out, timeout).await;
            return Err(HandshakeError::Failed(tls_error(e)));
        }
    }
    flush(sock, &mut conn, &mut out, timeout).await.map_err(HandshakeError::Failed)?;
    info!(
        version = conn.version(),
        cipher = conn.cipher(),
        resumed = conn.resumed(),
        "data connection TLS established"
    );
    if tls.require_reuse && !conn.resumed() {
        // A clean TLS end (close_notify), so the client reads an empty transfer and then
        // the 522 on the control connection, rather than a broken data connection.
        let _ = finish_send(sock, &mut conn, &mut out, timeout).await;
        return Err(HandshakeError::NotResumed);
    }
    Ok(DataStream { conn, early })
}

/// Encrypts and sends all of `plain`.
async fn send_plain(
    sock: &SharedFd,
    conn: &mut TlsConn,
    mut plain: &[u8],
    out: &mut Vec<u8>,
    stall: Duration,
) -> io::Result<()> {
    while !plain.is_empty() {
        let n = conn.write(plain);
        plain = &plain[n..];
        flush(sock, conn, out, stall).await?;
    }
    Ok(())
}

/// Ends a download: close_notify, FIN, then a short wait for the client's end, so neither
/// the last record nor the close_notify is lost to a reset.
pub async fn finish_send(
    sock: &SharedFd,
    conn: &mut TlsConn,
    out: &mut Vec<u8>,
    stall: Duration,
) -> io::Result<()> {
    conn.close();
    flush(sock, conn, out, stall).await?;
    linger(sock).await;
    Ok(())
}

/// After the close_notify went out: FIN, then what the client still sends (its close_notify,
/// its end) is read and dropped for a short while, so the close does not become a reset that
/// destroys data the client has not read yet.
pub async fn linger(sock: &SharedFd) {
    let _ = nix::sys::socket::shutdown(
        std::os::fd::AsRawFd::as_raw_fd(&**sock),
        nix::sys::socket::Shutdown::Write,
    );
    let mut buf = Vec::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + LINGER;
    while tokio::time::Instant::now() < deadline {
        match recv_some(sock, buf, LINGER).await {
            Ok(b) if !b.is_empty() => buf = b,
            _ => break,
        }
    }
}

/// A listing (or any bytes in memory) over TLS.
pub async fn send_bytes(conn: &DataConn<'_>, stream: &mut DataStream, bytes: &[u8]) -> io::Result<u64> {
    let stall = conn.limits.stall_timeout;
    let mut out = Vec::new();
    send_plain(conn.sock, &mut stream.conn, bytes, &mut out, stall).await?;
    finish_send(conn.sock, &mut stream.conn, &mut out, stall).await?;
    Ok(bytes.len() as u64)
}

/// RETR over TLS: `len` bytes of `file` from `offset`, read into a buffer of `pool`,
/// converted to CRLF for TYPE A, encrypted and sent. A file that ends early fails the
/// transfer, as on the plain paths ([`zerocopy::file_shrank`]).
pub async fn send_file(
    conn: &DataConn<'_>,
    stream: &mut DataStream,
    pool: &BufPool,
    file: &SharedFd,
    (offset, len): (u64, u64),
    ascii: bool,
) -> io::Result<u64> {
    let stall = conn.limits.stall_timeout;
    let mut pace = Pacer::new(conn);
    let (mut buf, mut out, mut crlf) = (pool.take(), Vec::new(), Vec::new());
    let (mut pos, end, mut sent, mut prev_cr) = (offset, offset + len, 0u64, false);
    let result = async {
        while pos < end {
            if conn.abort.is_aborted() {
                return Err(zerocopy::aborted());
            }
            let (res, back) = ops::read_at(file, std::mem::take(&mut buf), pos).await;
            buf = back;
            if res? == 0 {
                return Err(zerocopy::file_shrank());
            }
            buf.truncate((end - pos).min(buf.len() as u64) as usize);
            pos += buf.len() as u64;
            let wire = if ascii {
                crlf.clear();
                to_crlf(&buf, &mut prev_cr, &mut crlf);
                &crlf
            } else {
                &buf
            };
            send_plain(conn.sock, &mut stream.conn, wire, &mut out, stall).await?;
            sent += wire.len() as u64;
            pace.account(wire.len() as u64).await;
        }
        finish_send(conn.sock, &mut stream.conn, &mut out, stall).await?;
        Ok(sent)
    }
    .await;
    pool.give(buf);
    result
}

/// Writes an upload's plaintext to its file as it is decrypted, paced and counted: CRLF -> LF
/// for TYPE A, a CR at a chunk's end held until the next byte shows whether LF follows. Both
/// TLS paths (user space here, the kernel's in `ktls`) write through it.
pub struct UploadWriter<'a> {
    file: &'a SharedFd,
    pace: Pacer<'a>,
    ascii: bool,
    held_cr: bool,
    lf: Vec<u8>,
    start: u64,
    pos: u64,
}

impl<'a> UploadWriter<'a> {
    /// A writer to `file` from `offset` for a transfer on `conn`.
    pub fn new(conn: &'a DataConn<'_>, file: &'a SharedFd, offset: u64, ascii: bool) -> UploadWriter<'a> {
        let pace = Pacer::new(conn);
        UploadWriter { file, pace, ascii, held_cr: false, lf: Vec::new(), start: offset, pos: offset }
    }

    /// Writes `plain` and empties it (its buffer is kept for the next chunk).
    pub async fn write(&mut self, plain: &mut Vec<u8>) -> io::Result<()> {
        if plain.is_empty() {
            return Ok(());
        }
        let data = if self.ascii {
            self.lf.clear();
            from_crlf(plain, &mut self.held_cr, &mut self.lf);
            std::mem::take(&mut self.lf)
        } else {
            std::mem::take(plain)
        };
        let n = data.len();
        let (res, back) = ops::write_all_at(self.file, data, 0..n, self.pos).await;
        if self.ascii {
            self.lf = back;
        } else {
            *plain = back;
        }
        plain.clear();
        res?;
        self.pos += n as u64;
        self.pace.account(n as u64).await;
        Ok(())
    }

    /// The upload ended cleanly: a held CR is written as it came. Returns the bytes written.
    pub async fn finish(self) -> io::Result<u64> {
        let mut pos = self.pos;
        if self.held_cr {
            let (res, _) = ops::write_all_at(self.file, b"\r".to_vec(), 0..1, pos).await;
            res?;
            pos += 1;
        }
        Ok(pos - self.start)
    }
}

/// STOR over TLS: decrypts what arrives (CRLF -> LF for TYPE A) and writes it to `file` from
/// `offset`; returns the bytes written. The upload is complete only with the client's
/// close_notify: an end of stream without it may be a cut (RFC 8446 §6.1), so it fails the
/// transfer and the partial file follows the atomic/keep_partial rules.
pub async fn recv_file(
    conn: &DataConn<'_>,
    stream: &mut DataStream,
    pool: &BufPool,
    file: &SharedFd,
    offset: u64,
    ascii: bool,
) -> io::Result<u64> {
    let stall = conn.limits.stall_timeout;
    let mut writer = UploadWriter::new(conn, file, offset, ascii);
    let (mut buf, mut plain, mut out) = (pool.take(), std::mem::take(&mut stream.early), Vec::new());
    let result = async {
        loop {
            writer.write(&mut plain).await?;
            if stream.conn.closed_cleanly() {
                let written = writer.finish().await?;
                // Our close_notify answers theirs: Python's ftplib waits for it.
                stream.conn.close();
                let _ = flush(conn.sock, &mut stream.conn, &mut out, stall).await;
                return Ok(written);
            }
            if conn.abort.is_aborted() {
                return Err(zerocopy::aborted());
            }
            buf = recv_some(conn.sock, std::mem::take(&mut buf), stall).await?;
            if buf.is_empty() {
                return Err(cut());
            }
            stream.conn.feed(&buf, &mut plain).map_err(tls_error)?;
            // Key updates and alerts may want an answer.
            flush(conn.sock, &mut stream.conn, &mut out, stall).await?;
        }
    }
    .await;
    pool.give(buf);
    result
}

/// Closes a data connection whose TLS was refused: the client sees its end at once.
pub fn refuse(sock: &SharedFd) {
    sockets::shutdown(std::os::fd::AsRawFd::as_raw_fd(&**sock));
}

/// A data connection that ended without the client's close_notify (a cut upload).
pub(super) fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "data connection closed without TLS close_notify")
}
