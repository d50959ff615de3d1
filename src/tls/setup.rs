//! The TLS server configuration, built from PEM bytes (the configuration layer reads the
//! files): certificate chain, matching private key, optional client-certificate CA; and the
//! per-control-session copy that gets its own resumption store ([`SessionTls`]).

use super::conn::TlsConn;
use super::store::SessionStore;
use super::validity::not_after_unix;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The crypto provider, chosen on purpose: aws-lc-rs.
///
/// - Speed: its AES-GCM has the AVX-512/VAES code paths OpenSSL has (what vsftpd uses), so
///   PROT P throughput can meet OpenSSL's on the Xeon hosts; its ECDSA/RSA signing and
///   X25519 make the handshakes (one per data connection) cheaper than ring's.
/// - FIPS: the same crate has a FIPS 140-3 validated build (`fips` feature) for sites that need it;
///   ring has none.
/// - Build: on x86_64/aarch64 Linux it builds with the C compiler alone (cc crate; no cmake,
///   nasm, Go or bindgen: checked on a fresh Debian with only gcc); only the FIPS build needs
///   cmake and Go.
/// - kTLS: every suite it offers here (AES-128/256-GCM, ChaCha20-Poly1305; no CBC) is one the
///   kernel's `tls` ULP can take over, and rustls extracts the keys for either provider.
///
/// Passed explicitly everywhere (never the process default), so tests, the load generator
/// and the server use the same one.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why a TLS configuration could not be built; the configuration layer names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("{0}")]
    Certificate(String),
    /// The key file holds no usable private key.
    #[error("{0}")]
    PrivateKey(String),
    /// The key is not the certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The client CA file holds no usable certificate.
    #[error("{0}")]
    ClientCa(String),
}

/// A ready server configuration, shared by all sessions started while it is current.
#[derive(Debug, Clone)]
pub struct TlsServer {
    base: Arc<ServerConfig>,
    not_after: Option<i64>,
}

impl TlsServer {
    /// Builds from PEM: `chain` (leaf first), `key` (PKCS#8, PKCS#1 or SEC1) and, when client
    /// certificates are required, the CA certificates they must chain to.
    pub fn from_pem(chain: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<TlsServer, SetupError> {
        let certs = pem_certs(chain).map_err(SetupError::Certificate)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| SetupError::PrivateKey(format!("no usable PEM private key: {e}")))?;
        let not_after = not_after_unix(&certs[0]);
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| SetupError::Certificate(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for ca in pem_certs(pem).map_err(SetupError::ClientCa)? {
                    roots
                        .add(ca)
                        .map_err(|e| SetupError::ClientCa(format!("unusable CA certificate: {e}")))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| SetupError::ClientCa(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => SetupError::KeyMismatch,
            other => SetupError::PrivateKey(other.to_string()),
        })?;
        // The kTLS hand-off takes the traffic keys after the handshake.
        config.enable_secret_extraction = true;
        // Stateful resumption only (see `SessionStore`): no ticket key, nothing to rotate.
        config.send_tls13_tickets = 2;
        config.max_early_data_size = 0;
        Ok(TlsServer { base: Arc::new(config), not_after })
    }

    /// When the leaf certificate expires (unix seconds), if it could be read.
    pub fn not_after_unix(&self) -> Option<i64> {
        self.not_after
    }

    /// A configuration for one control session and its data connections, with a resumption
    /// store of its own.
    pub fn session(&self) -> SessionTls {
        let mut config = ServerConfig::clone(&self.base);
        let store = Arc::new(SessionStore::default());
        config.session_storage = Arc::clone(&store) as _;
        // Uploads get no TLS 1.3 tickets: a client that only writes never reads them, and
        // closing a socket with unread bytes resets it, which can drop the upload's last
        // bytes still in the client's send queue (curl before 8.9 does this: curl #6149).
        let mut upload = config.clone();
        upload.send_tls13_tickets = 0;
        SessionTls { config: Arc::new(config), upload: Arc::new(upload), store }
    }
}

/// The TLS of one control session: its control connection and every data connection are
/// accepted with it, so only they share resumable sessions.
#[derive(Debug, Clone)]
pub struct SessionTls {
    config: Arc<ServerConfig>,
    /// The same with no TLS 1.3 tickets, for upload data connections.
    upload: Arc<ServerConfig>,
    store: Arc<SessionStore>,
}

impl SessionTls {
    /// A server connection waiting for a ClientHello.
    pub fn accept(&self) -> TlsConn {
        TlsConn::new(Arc::clone(&self.config))
    }

    /// A server connection for an upload's data connection: it resumes like the others
    /// but sends no session tickets the client would have to read.
    pub fn accept_upload(&self) -> TlsConn {
        TlsConn::new(Arc::clone(&self.upload))
    }

    /// Resumable sessions this control session holds.
    pub fn stored_sessions(&self) -> usize {
        self.store.len()
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(certs)
}
