//! FTPS for the FTP scenarios (RFC 4217): a rustls client with the server's crypto provider
//! (aws-lc-rs), explicit (`AUTH TLS`) or implicit TLS, and data connections that resume the
//! control connection's TLS session as curl does. [`TlsStream`] is a tokio byte stream over it.
//!
//! The benchmark's servers use a self-signed certificate, so the certificate itself is not
//! checked; its handshake signature is, so a TLS handshake costs what a real client's does.

use crate::report::Failure;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How a session gets its TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// `AUTH TLS` on the control connection, then `PBSZ 0` and `PROT P` after login.
    Explicit,
    /// The handshake first (an implicit-TLS port, customarily 990), then `PBSZ 0`, `PROT P`.
    Implicit,
}

/// The TLS protocol versions the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.3 or 1.2, whichever the server prefers.
    Any,
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// Accepts the server's certificate as it is (the bench's is self-signed) but checks that the
/// handshake was signed with its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The run's TLS client settings: one configuration, copied per control session.
#[derive(Debug)]
pub struct ClientTls {
    pub mode: TlsMode,
    base: ClientConfig,
}

impl ClientTls {
    /// A client offering `version`, with the same provider the server uses.
    pub fn new(mode: TlsMode, version: TlsVersion) -> Result<ClientTls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
            TlsVersion::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V12 => &[&rustls::version::TLS12],
            TlsVersion::V13 => &[&rustls::version::TLS13],
        };
        let base = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(ClientTls { mode, base })
    }

    /// The configuration of one control session and its data connections. Its own resumption
    /// store, as curl keeps per connection: sessions running side by side must not resume
    /// each other's TLS sessions, which a server binding data to its control session refuses.
    pub fn session(&self) -> Arc<ClientConfig> {
        let mut config = self.base.clone();
        config.resumption = Resumption::in_memory_sessions(8);
        Arc::new(config)
    }
}

/// A TLS client connection over a TCP stream, read and written through tokio's traits.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Ciphertext read from the socket and not yet given to rustls: one large read instead
    /// of rustls's 4 KiB ones saves system calls on bulk downloads.
    inbuf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Ciphertext rustls produced and the socket has not taken yet.
    outbuf: Vec<u8>,
    sent: usize,
    closing: bool,
}

impl TlsStream {
    /// Runs the client handshake on `tcp` (each wait at most `timeout`).
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        read_buf: usize,
        timeout: Duration,
    ) -> Result<TlsStream, Failure> {
        let name = ServerName::IpAddress(tcp.peer_addr().map_err(Failure::Io)?.ip().into());
        let conn = ClientConnection::new(config, name).map_err(|e| Failure::Tls(e.to_string()))?;
        let mut s = TlsStream {
            tcp,
            conn,
            inbuf: vec![0; read_buf.max(4096)].into_boxed_slice(),
            start: 0,
            end: 0,
            outbuf: Vec::new(),
            sent: 0,
            closing: false,
        };
        let handshake = std::future::poll_fn(|cx| s.poll_handshake(cx));
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(Failure::Timeout("tls-handshake")),
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(Failure::Tls(e.to_string())),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Ok(Ok(())) => Ok(s),
        }
    }

    /// The handshake resumed an earlier session (on a data connection: the control one's).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed during the TLS handshake",
                )));
            }
        }
    }

    /// Sends what rustls has queued; ready once all of it is in the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.sent == self.outbuf.len() {
                self.outbuf.clear();
                self.sent = 0;
                if !self.conn.wants_write() {
                    return Poll::Ready(Ok(()));
                }
                while self.conn.wants_write() {
                    self.conn.write_tls(&mut self.outbuf)?;
                }
            }
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outbuf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
    }

    /// Gives rustls the next ciphertext (reading the socket when none is buffered) and
    /// processes it; returns how many bytes it took, 0 at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start == self.end {
            let mut rb = ReadBuf::new(&mut self.inbuf);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut rb))?;
            (self.start, self.end) = (0, rb.filled().len());
        }
        let n = self.conn.read_tls(&mut &self.inbuf[self.start..self.end])?;
        self.start += n;
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued tells the server why; best effort.
            let _ = self.poll_send(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    // 0: the server's close_notify, the clean end of the data.
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // An end of stream without close_notify: the data may have been cut.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Err(e)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Post-handshake messages (a key update) may want an answer; never wait for it.
            if this.conn.wants_write() {
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Encrypt more only once the previous records are in the socket: bounded memory.
        ready!(this.poll_send(cx))?;
        let n = this.conn.writer().write(data)?;
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// close_notify, then the TCP FIN: the server can tell a complete upload from a cut one.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.conn.send_close_notify();
            this.closing = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
