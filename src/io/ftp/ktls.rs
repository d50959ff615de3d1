//! Kernel TLS for FTPS data connections: the start-up decision (`ftp.tls.ktls`, probed once,
//! one log line), the hand-off after a data connection's handshake, and the TLS ends of the
//! zero-copy paths: close_notify out through a control message, in through a refused splice.
//!
//! Downloads and listings give the kernel the send keys (TLS_TX) and run the plain
//! sendfile/splice/send loops unchanged; uploads give it both directions (TLS_RX for the data,
//! TLS_TX for the close_notify that answers the client's). The kernel path does not follow a
//! TLS 1.3 KeyUpdate: one arriving in an upload fails that transfer (a download never reads).

use super::tls::{linger, DataStream};
use crate::config::tls::Ktls;
use crate::config::ConfigError;
use crate::io::ring::ops::{self, SharedFd};
use crate::io::ring::sockets::{self, would_block};
use crate::io::ring::zerocopy::{self, DataConn, Pacer, RecvEnd};
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
    /// A binary upload: the kernel decrypts (and encrypts the closing alert).
    Receive,
    /// A TYPE A upload: its CRLF conversion reads every byte in user space anyway, and only
    /// splice's end (a refused record) tells the kernel path where the data ends.
    UserSpace,
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
    let why_not = match (want, suite) {
        (Want::UserSpace, _) => Some("TYPE A uploads are decrypted in user space".to_string()),
        (_, Some(s)) if kernel.suites.contains(&s) => None,
        (_, Some(s)) => Some(format!("cipher not offloadable: the kernel did not take {}", s.name())),
        (_, None) => {
            Some(format!("cipher not offloadable: {} {}", stream.conn.version(), stream.conn.cipher()))
        }
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

/// STOR on the kernel path: `early` first, then socket -> pipe -> file splices of decrypted
/// records until one that is not data. Complete only with the client's close_notify (answered
/// with ours); an end of stream without it, any other alert, a KeyUpdate or a record that
/// does not decrypt (EBADMSG) fails the transfer, and the partial file follows the
/// atomic/keep_partial rules.
pub async fn recv_file(conn: &DataConn<'_>, file: &SharedFd, offset: u64, early: Vec<u8>) -> io::Result<u64> {
    let stall = conn.limits.stall_timeout;
    let mut pace = Pacer::new(conn);
    let mut pos = offset;
    let mut pending = early;
    loop {
        if !pending.is_empty() {
            let n = pending.len();
            let (res, back) = ops::write_all_at(file, pending, 0..n, pos).await;
            res?;
            pending = back;
            pending.clear();
            pos += n as u64;
            pace.account(n as u64).await;
        }
        let (n, end) = zerocopy::recv_file_until(conn, file, pos, None).await?;
        pos += n;
        if end == RecvEnd::Eof {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "data connection closed without TLS close_notify",
            ));
        }
        pending.resize(MAX_RECORD_PLAINTEXT, 0);
        let (content_type, got) = recv_record(conn.sock, &mut pending, stall).await?;
        pending.truncate(got);
        match ControlRecord::parse(content_type, &pending) {
            ControlRecord::CloseNotify => {
                // Our close_notify answers theirs (Python's ftplib waits for it); best effort.
                let _ = send_close_notify(conn.sock, stall).await;
                return Ok(pos - offset);
            }
            // A data record after all (written on the next round); an empty one is the end
            // of stream.
            ControlRecord::Data if got > 0 => {}
            ControlRecord::Data => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "data connection closed without TLS close_notify",
                ))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the client sent {} during the upload", other.describe()),
                ))
            }
        }
    }
}
