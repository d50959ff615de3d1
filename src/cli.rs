//! Command-line interface: the `ferry` flags and subcommands.
//! Flags become the top configuration layer; subcommands are small one-shot tools.

use crate::config::{Config, ConfigError, ConfigSource};
use clap::{Args, Parser, Subcommand};
use figment::value::{Dict, Value};
use std::path::PathBuf;

/// Ferry: a zero-copy io_uring FTP + TFTP appliance server.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// Settings shared by running and checking.
    #[command(flatten)]
    pub overrides: Overrides,
    /// What to do; without a subcommand, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that override the configuration file and environment.
#[derive(Debug, Clone, Args, Default)]
pub struct Overrides {
    /// Configuration file (default: /etc/ferry/ferry.toml when it exists).
    #[arg(long, short = 'c', global = true, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory to serve (top-level `root`).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Worker threads (0 = one per usable CPU).
    #[arg(long, global = true)]
    pub workers: Option<usize>,
    /// Service user to drop to when started as root.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Port of every FTP listen address.
    #[arg(long, global = true)]
    pub ftp_port: Option<u16>,
    /// Port of every TFTP listen address.
    #[arg(long, global = true)]
    pub tftp_port: Option<u16>,
    /// Log filter (`info`, `debug`, `ferry=trace`).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log line format on stderr: text or json.
    #[arg(long, global = true)]
    pub log_format: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve FTP and TFTP (the default).
    Run,
    /// Validate the configuration (FILE, or the usual layers) and print the effective result.
    CheckConfig {
        /// File to check instead of the configured one.
        file: Option<PathBuf>,
    },
    /// Read a password from standard input and print its argon2id PHC hash for `ftp.users`.
    HashPassword,
    /// Show the running server's FTP sessions and TFTP transfers (from the metrics endpoint's
    /// `/sessions`, at `metrics.listen` of the configuration).
    Sessions {
        /// One JSON array of objects instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print what a TFTP request would be served as, and why: the remap rules that matched,
    /// the client's root, the final path and whether it would be served (as the server decides).
    TftpResolve {
        /// The file name as the client sends it.
        name: String,
        /// The client's address.
        #[arg(long)]
        client: std::net::IpAddr,
        /// The client's MAC address (default: the kernel's neighbour table, as the server reads it).
        #[arg(long)]
        mac: Option<crate::tftp::roots::MacAddr>,
        /// An upload (WRQ) instead of a read.
        #[arg(long)]
        write: bool,
    },
    /// Internal: the privileged port-20 binder helper (started by the server itself).
    #[command(hide = true)]
    Binder(crate::binder::server::BinderArgs),
}

impl Overrides {
    /// Where the TOML layer comes from.
    pub fn source(&self) -> ConfigSource {
        match &self.config {
            Some(path) => ConfigSource::Explicit(path.clone()),
            None => ConfigSource::Default,
        }
    }

    /// The flags that were given, as a partial configuration tree (the top layer).
    ///
    /// `--ftp-port`/`--tftp-port` rewrite the port of the listen addresses that the lower
    /// layers produced, so they need the merged lower layers (`below`).
    pub fn to_dict(&self, below: &Config) -> Dict {
        let mut top = Dict::new();
        if let Some(root) = &self.root {
            top.insert("root".into(), Value::from(root.display().to_string()));
        }
        if let Some(workers) = self.workers {
            top.insert("workers".into(), Value::from(workers as u64));
        }
        if let Some(user) = &self.user {
            top.insert("user".into(), Value::from(user.clone()));
        }
        let mut log = Dict::new();
        if let Some(level) = &self.log_level {
            log.insert("level".into(), Value::from(level.clone()));
        }
        if let Some(format) = &self.log_format {
            log.insert("format".into(), Value::from(format.clone()));
        }
        if !log.is_empty() {
            top.insert("log".into(), Value::from(log));
        }
        let with_port = |addrs: &[std::net::SocketAddr], port: u16| -> Value {
            Value::from(
                addrs
                    .iter()
                    .map(|a| Value::from(std::net::SocketAddr::new(a.ip(), port).to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        if let Some(port) = self.ftp_port {
            let mut ftp = Dict::new();
            ftp.insert("listen".into(), with_port(&below.ftp.listen, port));
            top.insert("ftp".into(), Value::from(ftp));
        }
        if let Some(port) = self.tftp_port {
            let mut tftp = Dict::new();
            tftp.insert("listen".into(), with_port(&below.tftp.listen, port));
            top.insert("tftp".into(), Value::from(tftp));
        }
        top
    }

    /// Loads the configuration with these flags on top, from `source`.
    pub fn load(&self, source: &ConfigSource) -> Result<Config, ConfigError> {
        // The port flags rewrite listen lists, so read the lower layers first without
        // validation (validation of an incomplete layer set could fail on e.g. `root`).
        let below = Config::extract_unvalidated(source)?;
        Config::load(source, &self.to_dict(&below))
    }
}
