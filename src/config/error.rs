//! The one error type configuration loading and validation return.
//! Every variant names the offending key so an operator can fix the file without guessing.

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that parsed but cannot work (inverted range, missing directory, ...).
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// The TOML file is not TOML: `/etc/ferry/ferry.toml:12:5: duplicate key `banner``, one
    /// line an editor or a terminal can jump to.
    #[error("{location}: {reason}")]
    Syntax { location: String, reason: String },
    /// A layer could not be read or did not match the schema (unknown key, wrong type).
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    /// Builds an `Invalid` error for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }
}
