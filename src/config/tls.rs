//! The `[ftp.tls]` section: FTPS (RFC 4217) certificates, who must protect what, session
//! reuse on data connections and the implicit-TLS listener; and reading the PEM files into the
//! TLS core's server configuration, each failure naming the key and the reason.

use super::ConfigError;
use crate::ftp::settings::{TlsPolicy, TlsRules};
use crate::tls::{SetupError, TlsServer};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Who must use TLS (vsftpd `force_local_logins_ssl` + `force_local_data_ssl`, libunftp
/// `FtpsRequired`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsRequired {
    /// TLS is offered; nobody has to use it.
    #[default]
    None,
    /// Named users must protect control and data; anonymous may stay in clear.
    Accounts,
    /// Everyone, anonymous too.
    All,
}

/// Whether FTPS data connections hand their keys to the kernel (`tls` ULP) after the
/// handshake, so sendfile/splice move file pages without user-space encryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ktls {
    /// Where the kernel takes the negotiated cipher; user-space TLS otherwise.
    #[default]
    Auto,
    /// Always user-space TLS.
    Off,
    /// Kernel TLS for every protected transfer: no kernel support stops the start, a cipher
    /// the kernel cannot take fails the transfer.
    Require,
}

/// Settings of FTPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Offer AUTH TLS (and the implicit listener, when set).
    pub enabled: bool,
    /// PEM certificate chain, the server's certificate first.
    pub certificate: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate issued by one.
    pub client_ca: Option<PathBuf>,
    /// Who must protect the control and data connections.
    pub required: TlsRequired,
    /// A data connection's TLS must resume the control connection's session (vsftpd
    /// `require_ssl_reuse`): no one else can take over a data connection.
    pub require_session_reuse: bool,
    /// Serve implicit TLS (the handshake first, no AUTH) on `implicit_listen`.
    pub implicit: bool,
    /// Addresses of the implicit-TLS listener.
    pub implicit_listen: Vec<SocketAddr>,
    /// Kernel TLS for data connections (probed once at start).
    pub ktls: Ktls,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            certificate: None,
            private_key: None,
            client_ca: None,
            required: TlsRequired::None,
            require_session_reuse: true,
            implicit: false,
            implicit_listen: vec!["[::]:990".parse().expect("literal address")],
            ktls: Ktls::Auto,
        }
    }
}

impl TlsConfig {
    /// Checks the keys and that the files make a working TLS configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            if self.required != TlsRequired::None {
                return Err(ConfigError::invalid(
                    "ftp.tls.required",
                    "TLS is required but ftp.tls.enabled is false",
                ));
            }
            if self.implicit {
                return Err(ConfigError::invalid(
                    "ftp.tls.implicit",
                    "implicit TLS needs ftp.tls.enabled = true",
                ));
            }
            return Ok(());
        }
        if self.implicit {
            if self.implicit_listen.is_empty() {
                return Err(ConfigError::invalid(
                    "ftp.tls.implicit_listen",
                    "implicit TLS is on but no address is given",
                ));
            }
            if let Some(i) = self.implicit_listen.iter().position(|a| a.port() == 0) {
                return Err(ConfigError::invalid(
                    format!("ftp.tls.implicit_listen[{i}]"),
                    "port 0 is not allowed: each worker would bind a different port",
                ));
            }
        }
        self.load().map(|_| ())
    }

    /// Reads the PEM files and builds the server configuration; `None` when TLS is off.
    pub fn load(&self) -> Result<Option<TlsServer>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let cert_path = required_path("ftp.tls.certificate", &self.certificate)?;
        let key_path = required_path("ftp.tls.private_key", &self.private_key)?;
        let chain = read("ftp.tls.certificate", cert_path)?;
        let key = read("ftp.tls.private_key", key_path)?;
        let ca = match &self.client_ca {
            Some(path) => Some(read("ftp.tls.client_ca", path)?),
            None => None,
        };
        TlsServer::from_pem(&chain, &key, ca.as_deref()).map(Some).map_err(|e| {
            let (key, reason) = match &e {
                SetupError::Certificate(why) => {
                    ("ftp.tls.certificate", format!("{}: {why}", cert_path.display()))
                }
                SetupError::PrivateKey(why) => {
                    ("ftp.tls.private_key", format!("{}: {why}", key_path.display()))
                }
                SetupError::KeyMismatch => (
                    "ftp.tls.private_key",
                    format!("{} does not match the certificate {}", key_path.display(), cert_path.display()),
                ),
                SetupError::ClientCa(why) => ("ftp.tls.client_ca", why.clone()),
            };
            ConfigError::invalid(key, reason)
        })
    }
}

fn required_path<'a>(key: &str, path: &'a Option<PathBuf>) -> Result<&'a Path, ConfigError> {
    path.as_deref().ok_or_else(|| ConfigError::invalid(key, "TLS is enabled but no file is given"))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))
}

impl TlsConfig {
    /// The session core's FTPS rules; `None` when TLS is off (AUTH gets 502).
    pub fn rules(&self) -> Option<TlsRules> {
        let required = match self.required {
            TlsRequired::None => TlsPolicy::Optional,
            TlsRequired::Accounts => TlsPolicy::Accounts,
            TlsRequired::All => TlsPolicy::All,
        };
        self.enabled.then_some(TlsRules { required })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(c: &TlsConfig) -> (String, String) {
        match c.validate() {
            Err(ConfigError::Invalid { key, reason }) => (key, reason),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cert = write("cert.pem", a.cert.pem());
        let key = write("key.pem", a.signing_key.serialize_pem());
        let other_key = write("other.pem", b.signing_key.serialize_pem());

        let off = TlsConfig { required: TlsRequired::Accounts, ..TlsConfig::default() };
        assert_eq!(key_of(&off).0, "ftp.tls.required");
        let mut c = TlsConfig { enabled: true, ..TlsConfig::default() };
        assert_eq!(key_of(&c).0, "ftp.tls.certificate");
        c.certificate = Some(dir.path().join("missing.pem"));
        c.private_key = Some(key.clone());
        let (k, why) = key_of(&c);
        assert_eq!(k, "ftp.tls.certificate");
        assert!(why.contains("missing.pem") && why.contains("No such file"), "{why}");
        c.certificate = Some(cert.clone());
        c.private_key = Some(other_key);
        let (k, why) = key_of(&c);
        assert_eq!(k, "ftp.tls.private_key");
        assert!(why.contains("does not match the certificate"), "{why}");
        c.private_key = Some(key);
        c.validate().expect("a matching pair");
        assert!(c.load().unwrap().is_some());
        c.client_ca = Some(cert.clone());
        c.validate().expect("a CA file");
        c.client_ca = Some(dir.path().join("key.pem"));
        assert_eq!(key_of(&c).0, "ftp.tls.client_ca");
        c.client_ca = None;
        c.implicit = true;
        c.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
        assert_eq!(key_of(&c).0, "ftp.tls.implicit_listen[0]");
    }
}
