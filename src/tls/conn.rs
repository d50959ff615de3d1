//! One TLS server connection as a byte transformer: ciphertext from the peer goes in through
//! [`TlsConn::feed`], plaintext comes out; plaintext to send goes in through
//! [`TlsConn::write`] and ciphertext comes out of [`TlsConn::take_ciphertext`].

use super::kernel::{KernelKeys, KernelSuite};
use rustls::{HandshakeKind, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::sync::Arc;

/// Why a TLS connection cannot go on; after any of these the caller sends what
/// [`TlsConn::take_ciphertext`] still holds (an alert, when rustls queued one) and closes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer broke the protocol: not TLS at all, a failed handshake, a bad record.
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// rustls refused the bytes (its buffers are full: the peer sends faster than allowed).
    #[error("TLS: {0}")]
    Buffer(std::io::Error),
}

/// A server-side TLS connection without IO.
#[derive(Debug)]
pub struct TlsConn {
    conn: ServerConnection,
    failed: bool,
    peer_closed: bool,
}

impl TlsConn {
    pub(super) fn new(config: Arc<ServerConfig>) -> TlsConn {
        // `ServerConnection::new` fails only on a configuration rustls itself rejects, and
        // `TlsServer` builds that through rustls's checked builder.
        let conn = ServerConnection::new(config).expect("a configuration from ServerConfig's builder");
        TlsConn { conn, failed: false, peer_closed: false }
    }

    /// Takes ciphertext the peer sent and appends what it decrypts to `plain`: never more than
    /// has come in, and at most one record (16 KiB) beyond this call's bytes, so a flood cannot
    /// grow memory faster than it arrives. Never pass the
    /// end of stream here: call [`TlsConn::closed_cleanly`] then.
    pub fn feed(&mut self, mut ciphertext: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed {
            return Err(TlsError::Protocol(rustls::Error::HandshakeNotComplete));
        }
        while !ciphertext.is_empty() {
            // Reads at most one buffer's worth from the slice (advancing it); an empty
            // slice would count as the peer's end of stream, hence the loop condition.
            match self.conn.read_tls(&mut ciphertext) {
                // Only after close_notify: whatever follows it is not data.
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Err(TlsError::Buffer(e));
                }
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    self.failed = true;
                    return Err(TlsError::Protocol(e));
                }
            };
            self.peer_closed |= state.peer_has_closed();
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                // rustls said `n` bytes are ready; reading fewer would be a rustls bug.
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    self.failed = true;
                    return Err(TlsError::Buffer(e));
                }
            }
        }
        Ok(())
    }

    /// Queues `plain` for sending (encrypted once the handshake is done); returns how many
    /// bytes were taken: fewer when the outgoing buffer is full, so drain it and retry.
    pub fn write(&mut self, plain: &[u8]) -> usize {
        self.conn.writer().write(plain).unwrap_or(0)
    }

    /// Appends every ciphertext byte waiting to be sent (handshake, records, alerts) to `out`.
    pub fn take_ciphertext(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// True while ciphertext waits in [`TlsConn::take_ciphertext`].
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues close_notify (RFC 8446 §6.1): the end of the data, told apart from a cut.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// Bounds the ciphertext rustls holds before [`TlsConn::take_ciphertext`] drains it.
    pub fn set_buffer_limit(&mut self, bytes: usize) {
        self.conn.set_buffer_limit(Some(bytes));
    }

    /// The handshake has not finished yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent close_notify: what came before is all it meant to send. At end of stream
    /// without it, the data may have been cut (an attacker, or a crash).
    pub fn closed_cleanly(&self) -> bool {
        self.peer_closed
    }

    /// The handshake resumed a session (only those of this control session can be found).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// `TLSv1.3` and the like, for logs.
    pub fn version(&self) -> &'static str {
        match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(_) => "other",
            None => "none",
        }
    }

    /// The negotiated cipher suite's name, for logs.
    pub fn cipher(&self) -> &'static str {
        self.conn.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("none")
    }

    /// Hands the traffic keys over (the kTLS path: the kernel encrypts from then on). Only
    /// after the handshake, with no data buffered in either direction.
    pub fn into_secrets(self) -> Result<rustls::ExtractedSecrets, TlsError> {
        Ok(self.conn.dangerous_extract_secrets()?)
    }

    /// The negotiated version and cipher when the kernel's `tls` ULP knows them.
    pub fn kernel_suite(&self) -> Option<KernelSuite> {
        let suite = self.conn.negotiated_cipher_suite()?;
        KernelSuite::of(self.conn.protocol_version()?, suite.suite())
    }

    /// The traffic keys in the kernel's layout, for both directions. Only after the handshake,
    /// once [`TlsConn::take_ciphertext`] has drained everything and [`TlsConn::feed`] was given
    /// no bytes past the handshake (rustls would keep a partial record the kernel never sees):
    /// after this the kernel owns the record numbers and rustls is gone.
    pub fn into_kernel_keys(self) -> Result<KernelKeys, TlsError> {
        let suite = self.kernel_suite().ok_or_else(|| {
            TlsError::Protocol(rustls::Error::General(format!("{} cannot be offloaded", self.cipher())))
        })?;
        Ok(KernelKeys::new(suite.version, self.into_secrets()?))
    }
}
