//! The `[ftp]` configuration section: listeners, data connections, users and limits.
//! Filled out by the FTP work; the foundation only needs the listen addresses and port 20.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Settings of the FTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpConfig {
    /// Serve FTP at all.
    pub enabled: bool,
    /// Control connection listen addresses (`[::]` is dual-stack).
    pub listen: Vec<SocketAddr>,
    /// Source port of active-mode (PORT/EPRT) data connections; 0 = any ephemeral port.
    pub active_source_port: u16,
}

impl Default for FtpConfig {
    fn default() -> Self {
        FtpConfig {
            enabled: true,
            listen: vec!["[::]:21".parse().expect("literal address")],
            active_source_port: 20,
        }
    }
}

impl FtpConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self, _top: &super::Config) -> Result<(), ConfigError> {
        if self.enabled && self.listen.is_empty() {
            return Err(ConfigError::invalid("ftp.listen", "FTP is enabled but no listen address is given"));
        }
        Ok(())
    }
}
