//! Tracing setup: journald under systemd or when configured, otherwise readable or JSON
//! lines on stderr. The filter comes from `RUST_LOG` when set, else from `log.level`.

use crate::config::{LogConfig, LogFormat, LogTarget};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Handle to swap the filter at run time (SIGHUP reload of `log.level`).
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether the installed subscriber writes to stderr (not journald).
static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// True when an ERROR event already reaches stderr, so a fatal start-up message printed there
/// as well would appear twice.
pub fn errors_reach_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed) && tracing::enabled!(tracing::Level::ERROR)
}

/// Installs the global subscriber. Call once, before any thread is spawned.
pub fn init(cfg: &LogConfig) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(&cfg.level))
        }
        _ => EnvFilter::new(&cfg.level),
    };
    let want_journald = match cfg.target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let mut journald_failed = None;
    let output: Box<dyn Layer<Registry> + Send + Sync> = if want_journald {
        match tracing_journald::layer() {
            Ok(layer) => layer.with_syslog_identifier("ferry".into()).boxed(),
            Err(e) => {
                journald_failed = Some(e);
                stderr_layer(cfg.format)
            }
        }
    } else {
        stderr_layer(cfg.format)
    };
    let (filter, handle) = reload::Layer::new(filter);
    // try_init: a second init (tests calling in one process) keeps the first subscriber.
    let to_stderr = !want_journald || journald_failed.is_some();
    if tracing_subscriber::registry().with(output.with_filter(filter)).try_init().is_ok() {
        let _ = FILTER.set(handle);
        TO_STDERR.store(to_stderr, Ordering::Relaxed);
    }
    if let Some(e) = journald_failed {
        tracing::warn!("cannot reach journald ({e}); logging to stderr instead");
    }
}

/// Applies a new `log.level` (ignored while `RUST_LOG` is set, which always wins).
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var("RUST_LOG").is_ok_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Err("logging is not initialised".into()),
    }
}

fn stderr_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    // Colours only for a terminal: piped into a file, a container log or the journal, escape
    // codes would make the lines unreadable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let base =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_thread_names(true).with_ansi(ansi);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().with_current_span(true).with_span_list(false).boxed(),
    }
}
