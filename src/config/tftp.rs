//! The `[tftp]` configuration section: listeners, options caps, limits and access lists.
//! Filled out by the TFTP work; the foundation only needs the listen addresses.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Settings of the TFTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TftpConfig {
    /// Serve TFTP at all.
    pub enabled: bool,
    /// Request socket listen addresses (`[::]` is dual-stack).
    pub listen: Vec<SocketAddr>,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig { enabled: true, listen: vec!["[::]:69".parse().expect("literal address")] }
    }
}

impl TftpConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self, _top: &super::Config) -> Result<(), ConfigError> {
        if self.enabled && self.listen.is_empty() {
            return Err(ConfigError::invalid(
                "tftp.listen",
                "TFTP is enabled but no listen address is given",
            ));
        }
        Ok(())
    }
}
