//! Typed configuration and its layering: compiled-in defaults < TOML file < `FERRY_*`
//! environment < command-line flags (figment). Validation names the key and the reason.

pub mod bounds;
mod env;
mod error;
pub mod ftp;
pub mod tftp;
pub mod tls;
pub mod types;

pub use error::ConfigError;
pub use ftp::FtpConfig;
pub use tftp::TftpConfig;
pub use types::PortRange;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferry/ferry.toml";

/// Everything Ferry can be told, after all layers are merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory served when a protocol section does not name its own root.
    pub root: PathBuf,
    /// Worker threads, one per CPU; 0 = as many as CPUs this process may run on.
    pub workers: usize,
    /// Whether each worker is pinned to one CPU (see [`CpuPinning`]).
    pub cpu_pinning: CpuPinning,
    /// Service user the server drops to when started as root.
    pub user: String,
    /// On SIGTERM/SIGINT, how long running transfers may take to finish (seconds) before
    /// they are aborted.
    pub drain_timeout_secs: u64,
    /// Logging destination, format and level.
    pub log: LogConfig,
    /// Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// wu-ftpd format transfer log.
    pub xferlog: XferlogConfig,
    /// FTP server settings.
    pub ftp: FtpConfig,
    /// TFTP server settings.
    pub tftp: TftpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/srv/ferry"),
            workers: 0,
            cpu_pinning: CpuPinning::Auto,
            user: "ferry".into(),
            drain_timeout_secs: 30,
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            xferlog: XferlogConfig::default(),
            ftp: FtpConfig::default(),
            tftp: TftpConfig::default(),
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// journald when running under systemd (JOURNAL_STREAM set), else stderr.
    Auto,
    /// Always stderr.
    Stderr,
    /// Always journald.
    Journald,
}

/// Shape of stderr log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Destination.
    pub target: LogTarget,
    /// Line format on stderr.
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax (`info`, `ferry=debug`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { target: LogTarget::Auto, format: LogFormat::Text, level: "info".into() }
    }
}

/// Whether workers are pinned, one to each CPU the process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuPinning {
    /// Pin only when Ferry was given CPUs of its own (its affinity or cpuset is a strict
    /// subset of the online CPUs); on a shared host a pinned worker cannot move away from
    /// a busy CPU, and all its transfers wait (seen: 5 s stalls with six VMs on two cores).
    Auto,
    /// Always pin (an appliance whose CPUs serve only Ferry).
    On,
    /// Never pin: the scheduler places the workers.
    Off,
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text) and `GET /healthz`.
    pub enabled: bool,
    /// Address of the endpoint; keep it on loopback or a management network.
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: false, listen: "127.0.0.1:9121".parse().expect("literal address") }
    }
}

/// The `[xferlog]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XferlogConfig {
    /// Write one wu-ftpd format line per finished FTP or TFTP transfer.
    pub enabled: bool,
    /// The log file; SIGHUP reopens it (for logrotate).
    pub path: PathBuf,
}

impl Default for XferlogConfig {
    fn default() -> Self {
        XferlogConfig { enabled: false, path: PathBuf::from("/var/log/ferry/xferlog") }
    }
}

/// Where the TOML layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`: the file must exist.
    Explicit(PathBuf),
    /// No flag: read [`DEFAULT_CONFIG_PATH`] if it exists.
    Default,
    /// Embedded defaults only (used by tests).
    None,
}

impl Config {
    /// Merges every layer and validates the result.
    ///
    /// `cli` holds only the values set on the command line, as a partial TOML-shaped tree.
    pub fn load(source: &ConfigSource, cli: &figment::value::Dict) -> Result<Config, ConfigError> {
        let config: Config = layers(source)?
            .merge(Serialized::globals(cli.clone()))
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        config.finish()
    }

    /// Defaults under the TOML `text`, validated: the file layer alone, without the
    /// environment or flags (for tests and fuzzing; errors name the file `<string>`).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        check_syntax(text, "<string>")?;
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        config.finish()
    }

    /// Reads the files keys name (TFTP remap rules), then validates: what a loaded
    /// configuration goes through, at start and on every SIGHUP.
    fn finish(mut self) -> Result<Config, ConfigError> {
        self.validate()?;
        self.tftp.load_files()?;
        Ok(self)
    }

    /// Merges defaults, file and environment without validating (for flags that edit lists).
    pub fn extract_unvalidated(source: &ConfigSource) -> Result<Config, ConfigError> {
        layers(source)?.extract().map_err(|e| ConfigError::Load(describe_figment_error(e)))
    }

    /// Checks every value that parses but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.root.is_dir() {
            return Err(ConfigError::invalid(
                "root",
                format!("directory {} does not exist or is not a directory", self.root.display()),
            ));
        }
        bounds::check(self)?;
        self.check_listen_ports()?;
        if self.user.is_empty() {
            return Err(ConfigError::invalid("user", "must name a user"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("`{}` is not a log filter: {e}", self.log.level),
            ));
        }
        if self.xferlog.enabled {
            let dir =
                self.xferlog.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(ConfigError::invalid(
                    "xferlog.path",
                    format!("directory {} does not exist", dir.display()),
                ));
            }
        }
        self.ftp.validate(self)?;
        self.tftp.validate(self)?;
        if !self.ftp.enabled && !self.tftp.enabled {
            return Err(ConfigError::invalid(
                "ftp.enabled",
                "both FTP and TFTP are disabled: nothing to serve",
            ));
        }
        Ok(())
    }

    /// Refuses port 0 in every listen address: the kernel would pick the port, and each
    /// worker binds its own SO_REUSEPORT socket to an FTP or TFTP address, so each would get a
    /// different one while the log shows `:0`.
    fn check_listen_ports(&self) -> Result<(), ConfigError> {
        const PER_WORKER: &str = "port 0 is not allowed: each worker would bind a different port";
        let listeners = [("ftp.listen", &self.ftp.listen), ("tftp.listen", &self.tftp.listen)];
        for (key, addrs) in listeners {
            if let Some(i) = addrs.iter().position(|a| a.port() == 0) {
                return Err(ConfigError::invalid(format!("{key}[{i}]"), PER_WORKER));
            }
        }
        if self.metrics.listen.port() == 0 {
            return Err(ConfigError::invalid(
                "metrics.listen",
                "port 0 is not allowed: the kernel would pick a port no scraper knows",
            ));
        }
        Ok(())
    }

    /// Worker thread count after resolving 0 to the CPUs this process may use.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }

    /// The effective configuration as TOML, for `ferry check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Defaults, then the TOML file, then `FERRY_*` variables (`__` separates nested keys; see
/// [`env::layer`] for the variables that are not keys).
fn layers(source: &ConfigSource) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match source {
        ConfigSource::Explicit(path) => {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "configuration file {} does not exist or is not a file",
                    path.display()
                )));
            }
            fig = fig.merge(toml_file(path)?);
        }
        ConfigSource::Default if Path::new(DEFAULT_CONFIG_PATH).is_file() => {
            fig = fig.merge(toml_file(Path::new(DEFAULT_CONFIG_PATH))?);
        }
        ConfigSource::Default | ConfigSource::None => {}
    }
    Ok(fig.merge(env::layer()))
}

/// The file layer, after checking its syntax here: figment reports a syntax error as a
/// multi-line excerpt under the key `<top level>`, where one `file:line:column: reason` line
/// says it all.
fn toml_file(path: &Path) -> Result<figment::providers::Data<Toml>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Load(format!("{}: cannot read the configuration file: {e}", path.display()))
    })?;
    check_syntax(&text, &path.display().to_string())?;
    Ok(Toml::file_exact(path))
}

/// Checks that `text` is TOML, naming `file:line:column` of the first error.
fn check_syntax(text: &str, file: &str) -> Result<(), ConfigError> {
    let Err(e) = text.parse::<toml::Table>() else { return Ok(()) };
    let mut location = file.to_string();
    if let Some(before) = e.span().and_then(|span| text.get(..span.start)) {
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        location = format!("{location}:{line}:{column}");
    }
    let reason = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    Err(ConfigError::Syntax { location, reason: reason.join("; ") })
}

/// Renders every error figment collected, each naming its key path and source.
fn describe_figment_error(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { "<top level>".to_string() } else { e.path.join(".") };
            let source = match e.metadata.as_ref() {
                // A file names itself: `TOML file /etc/ferry/ferry.toml`.
                Some(m) => match &m.source {
                    Some(figment::Source::File(path)) => format!("{} {}", m.name, path.display()),
                    // The variable, not the key, is what the operator has to find and fix.
                    _ if m.name.contains("environment variable") => {
                        format!("environment variable {}", env::variable(&e.path))
                    }
                    _ => m.name.to_string(),
                },
                None => "configuration".into(),
            };
            format!("config key `{key}` ({source}): {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
