//! Kernel TLS for FTPS data connections: the start-up decision (`ftp.tls.ktls`, probed once,
//! one log line), the hand-off after a data connection's handshake, the upload loop, and
//! close_notify out and in through control messages.
//!
//! Downloads and listings give the kernel the send keys (TLS_TX) and run the plain
//! sendfile/splice/send loops unchanged; uploads give it both directions (TLS_RX for the data,
//! TLS_TX for the close_notify that answers the client's). The kernel path does not follow a
//! TLS 1.3 KeyUpdate: one arriving in an upload fails that transfer (a download never reads).

use super::tls::{cut, linger, DataStream, UploadWriter};
use crate::config::tls::Ktls;
use crate::config::ConfigError;
use crate::io::ring::ops::SharedFd;
use crate::io::ring::sockets::{self, would_block};
use crate::io::ring::zerocopy::{self, DataConn};
use crate::net::ktls::{self, Probe, Way};
use crate::tls::kernel::{ControlRecord, KernelSuite, ALERT, CLOSE_NOTIFY};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// Largest plaintext of one TLS record (RFC 8446 §5.1), what a control-record read needs.
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// The server's kernel-TLS decision, made once at start.
#[derive(Debug, Clone, Default)]
pub struct KernelTls {
    require: bool,
    /// Suites the kernel took in the probe (empty: user-space TLS only).
    suites: Vec<KernelSuite>,
}

impl KernelTls {
    /// Probes the kernel (unless `mode` is off) and logs, in one line, which path PROT P data
    /// will take and why. `require` without kernel support is an error naming the key.
    pub fn start(mode: Ktls) -> Result<KernelTls, String> {
        let mode_name = format!("{mode:?}").to_lowercase();
        if mode == Ktls::Off {
            info!(ktls = %mode_name, path = "user-space", "FTPS data: user-space TLS (ftp.tls.ktls = \"off\")");
            return Ok(KernelTls::default());
        }
        match ktls::probe() {
            Probe::Unavailable(why) if mode == Ktls::Require => Err(ConfigError::invalid(
                "ftp.tls.ktls",
                format!("\"require\", but this kernel cannot take TLS keys: {why}"),
            )
            .to_string()),
            Probe::Unavailable(why) => {
                info!(ktls = %mode_name, path = "user-space", reason = %why, "FTPS data: user-space TLS, no kernel TLS here");
                Ok(KernelTls::default())
            }
            Probe::Offloads { suites, refused } => {
                let names = |s: &mut dyn Iterator<Item = String>| s.collect::<Vec<_>>().join(", ");
                let took = names(&mut suites.iter().map(|s| s.name()));
                let not = names(&mut refused.iter().map(|(s, why)| format!("{} ({why})", s.name())));
                info!(
                    ktls = %mode_name,
                    path = "kernel",
                    offloaded = %took,
                    not_offloadable = %if not.is_empty() { "none" } else { not.as_str() },
                    "FTPS data: kernel TLS (sendfile/splice through the tls ULP); other ciphers in user space{}",
                    if mode == Ktls::Require { " are refused" } else { "" }
                );
                Ok(KernelTls { require: mode == Ktls::Require, suites })
            }
        }
    }

    /// The kernel may take data connections: handshakes then read whole records only.
    pub fn enabled(&self) -> bool {
        !self.suites.is_empty()
    }
}

/// What a transfer asks of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A download or listing: the kernel encrypts.
    Send,
    /// An upload: the kernel decrypts (and encrypts the closing alert).
    Receive,
}

/// Where a data connection's bytes are protected once its handshake is done.
pub enum Path {
    /// rustls in user space.
    UserSpace(DataStream),
    /// The kernel: the plain zero-copy paths run; `early` is plaintext rustls decrypted
    /// before the hand-off, delivered first.
    Kernel {
        /// Plaintext that came with the handshake.
        early: Vec<u8>,
    },
    /// `require`, and the kernel cannot take this one: the stream (to close cleanly) and why.
    Refused(DataStream, String),
}

/// Hands a data connection's keys to the kernel when it can take them, else keeps it in user
/// space (or refuses it under `require`). Fails only after the keys left rustls, when the
/// connection can go on neither way.
pub fn hand_off(sock: &SharedFd, stream: DataStream, want: Want, kernel: &KernelTls) -> io::Result<Path> {
    if !kernel.enabled() {
        return Ok(Path::UserSpace(stream));
    }
    let suite = stream.conn.kernel_suite();
    let why_not = match suite {
        Some(s) if kernel.suites.contains(&s) => None,
        Some(s) => Some(format!("cipher not offloadable: the kernel did not take {}", s.name())),
        None => Some(format!("cipher not offloadable: {} {}", stream.conn.version(), stream.conn.cipher())),
    };
    let fd = sock.as_raw_fd();
    let why_not =
        why_not.or_else(|| ktls::attach(fd).err().map(|e| format!("the tls ULP refused this socket: {e}")));
    if let Some(why) = why_not {
        if kernel.require {
            return Ok(Path::Refused(stream, format!("ftp.tls.ktls = \"require\": {why}")));
        }
        info!(reason = %why, "data connection TLS stays in user space");
        return Ok(Path::UserSpace(stream));
    }
    let DataStream { conn, early } = stream;
    let keys = conn.into_kernel_keys().map_err(|e| io::Error::other(format!("kernel TLS hand-off: {e}")))?;
    let fail = |e: io::Error| io::Error::new(e.kind(), format!("kernel TLS hand-off: {e}"));
    ktls::set_keys(fd, Way::Tx, &keys.tx).map_err(fail)?;
    if want == Want::Receive {
        ktls::set_keys(fd, Way::Rx, &keys.rx).map_err(fail)?;
    }
    Ok(Path::Kernel { early })
}

/// Sends close_notify through the kernel's send keys; each wait bounded by `stall`.
async fn send_close_notify(sock: &SharedFd, stall: Duration) -> io::Result<()> {
    let deadline = Instant::now() + stall;
    loop {
        match ktls::send_record(sock.as_raw_fd(), ALERT, &CLOSE_NOTIFY) {
            // Two bytes in one record: sent whole or not at all.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if would_block(&e) => sockets::ready(sock, libc::POLLOUT, deadline).await?,
            Err(e) => return Err(e),
        }
    }
}

/// Ends a download on the kernel path: close_notify, FIN, then the short wait for the
/// client's end, as the user-space path does.
pub async fn finish_send(sock: &SharedFd, stall: Duration) -> io::Result<()> {
    send_close_notify(sock, stall).await?;
    linger(sock).await;
    Ok(())
}

/// Reads the record a splice refused (the kernel keeps it until a receive with room for its
/// type takes it); each wait bounded by `stall`.
async fn recv_record(sock: &SharedFd, buf: &mut [u8], stall: Duration) -> io::Result<(u8, usize)> {
    let deadline = Instant::now() + stall;
    loop {
        match ktls::recv_record(sock.as_raw_fd(), buf) {
            Ok(got) => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if would_block(&e) => sockets::ready(sock, libc::POLLIN, deadline).await?,
            Err(e) => return Err(e),
        }
    }
}

/// What a kernel-TLS upload receives at once: eight full records, as the user-space path.
const RECV_CHUNK: usize = 128 * 1024;

/// STOR on the kernel path: `early` first, then what the kernel decrypts, received in large
/// chunks (several records per receive, decrypted straight into the buffer), converted from
/// CRLF for TYPE A, and written to `file`. Not splice: the kernel's TLS splice moves one record (16 KiB) per call, and its
/// two ring operations per record cost more than the one copy saved (measured in
/// tests/ktls_guest.rs). Complete only with the client's close_notify (answered with ours); an
/// end of stream without it, any other alert, a KeyUpdate or a record that does not decrypt
/// (EBADMSG) fails the transfer, and the partial file follows the atomic/keep_partial rules.
pub async fn recv_file(
    conn: &DataConn<'_>,
    file: &SharedFd,
    offset: u64,
    early: Vec<u8>,
    ascii: bool,
) -> io::Result<u64> {
    let stall = conn.limits.stall_timeout;
    let mut writer = UploadWriter::new(conn, file, offset, ascii);
    // A receive fills the buffer's capacity.
    let mut data = early;
    data.reserve(RECV_CHUNK.saturating_sub(data.len()));
    loop {
        writer.write(&mut data).await?;
        if conn.abort.is_aborted() {
            return Err(zerocopy::aborted());
        }
        data = match sockets::recv_some(conn.sock, std::mem::take(&mut data), stall).await {
            Ok(got) if got.is_empty() => return Err(cut()),
            Ok(got) => got,
            // A record that is not data is next: a receive without room for its type fails.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                let mut record = vec![0; MAX_RECORD_PLAINTEXT];
                let (content_type, got) = recv_record(conn.sock, &mut record, stall).await?;
                record.truncate(got);
                match ControlRecord::parse(content_type, &record) {
                    ControlRecord::CloseNotify => {
                        let written = writer.finish().await?;
                        // Our close_notify answers theirs (Python's ftplib waits for it).
                        let _ = send_close_notify(conn.sock, stall).await;
                        return Ok(written);
                    }
                    // Back to a full-size receive buffer holding this record's bytes.
                    ControlRecord::Data if got > 0 => {
                        let mut next = Vec::with_capacity(RECV_CHUNK.max(got));
                        next.extend_from_slice(&record);
                        next
                    }
                    ControlRecord::Data => return Err(cut()),
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the client sent {} during the upload", other.describe()),
                        ))
                    }
                }
            }
            Err(e) => return Err(e),
        };
    }
}
