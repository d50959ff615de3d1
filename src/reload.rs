//! Configuration reload on SIGHUP: re-read every layer, refuse changes that only a restart
//! can apply (sockets, workers, identity), and publish the rest to workers, which apply it
//! to sessions and transfers that start afterwards. Running transfers are never touched.

use crate::config::Config;
use std::sync::Arc;
use tokio::sync::watch;

/// Reads one key's value from a configuration, as a comparable string.
type KeyReader = fn(&Config) -> String;

/// Keys whose change needs a restart, with how to read them from a configuration.
const RESTART_ONLY: &[(&str, KeyReader)] = &[
    ("workers", |c| c.workers.to_string()),
    ("cpu_pinning", |c| format!("{:?}", c.cpu_pinning)),
    ("user", |c| c.user.clone()),
    ("root", |c| c.root.display().to_string()),
    ("ftp.enabled", |c| c.ftp.enabled.to_string()),
    ("ftp.listen", |c| format!("{:?}", c.ftp.listen)),
    ("ftp.active_source_port", |c| c.ftp.active_source_port.to_string()),
    ("ftp.anonymous.root", |c| format!("{:?}", c.ftp.anonymous.root)),
    ("ftp.tls.implicit", |c| c.ftp.tls.implicit.to_string()),
    ("ftp.tls.implicit_listen", |c| format!("{:?}", c.ftp.tls.implicit_listen)),
    // Kernel TLS support is probed once, at start, while still privileged.
    ("ftp.tls.ktls", |c| format!("{:?}", c.ftp.tls.ktls)),
    ("tftp.enabled", |c| c.tftp.enabled.to_string()),
    ("tftp.listen", |c| format!("{:?}", c.tftp.listen)),
    ("tftp.root", |c| format!("{:?}", c.tftp.root)),
    // Decides, per request socket at start, where transfers reply from.
    ("tftp.single_port", |c| c.tftp.single_port.to_string()),
    // The file cache is made once, at start.
    ("tftp.cache_bytes", |c| c.tftp.cache_bytes.to_string()),
    ("tftp.cache_max_file_bytes", |c| c.tftp.cache_max_file_bytes.to_string()),
    // Sizes every worker's datagram buffers, allocated at start.
    ("tftp.max_blksize", |c| c.tftp.max_blksize.to_string()),
    ("metrics.enabled", |c| c.metrics.enabled.to_string()),
    ("metrics.listen", |c| c.metrics.listen.to_string()),
    ("xferlog.enabled", |c| c.xferlog.enabled.to_string()),
    ("xferlog.path", |c| c.xferlog.path.display().to_string()),
    ("log.target", |c| format!("{:?}", c.log.target)),
    ("log.format", |c| format!("{:?}", c.log.format)),
];

/// The restart-only keys that differ between `running` and `new`.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    RESTART_ONLY.iter().filter(|(_, get)| get(running) != get(new)).map(|(key, _)| *key).collect()
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is live for new sessions and transfers.
    Applied,
    /// Nothing changed.
    Unchanged,
    /// Refused: these keys need a restart; the running configuration stays.
    NeedsRestart(Vec<&'static str>),
}

/// The configuration workers see, replaced as a whole on reload.
#[derive(Debug)]
pub struct LiveConfig {
    tx: watch::Sender<Arc<Config>>,
}

impl LiveConfig {
    /// Starts with the configuration the server was started with.
    pub fn new(initial: Arc<Config>) -> LiveConfig {
        LiveConfig { tx: watch::channel(initial).0 }
    }

    /// A handle for one worker.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.tx.subscribe()
    }

    /// The configuration now in force.
    pub fn current(&self) -> Arc<Config> {
        Arc::clone(&self.tx.borrow())
    }

    /// Offers a validated configuration: refused when a restart-only key changed.
    pub fn offer(&self, new: Config) -> ReloadOutcome {
        let running = self.current();
        let refused = restart_only_changes(&running, &new);
        if !refused.is_empty() {
            return ReloadOutcome::NeedsRestart(refused);
        }
        if *running == new {
            return ReloadOutcome::Unchanged;
        }
        self.tx.send_replace(Arc::new(new));
        ReloadOutcome::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_live_but_sockets_need_a_restart() {
        let live = LiveConfig::new(Arc::new(Config::default()));
        let worker = live.subscribe();

        let mut new = Config::default();
        new.ftp.limits.max_sessions_per_ip = 3;
        new.log.level = "debug".into();
        assert_eq!(live.offer(new.clone()), ReloadOutcome::Applied);
        assert_eq!(worker.borrow().ftp.limits.max_sessions_per_ip, 3);
        assert_eq!(live.offer(new.clone()), ReloadOutcome::Unchanged);

        let mut moved = new.clone();
        moved.ftp.listen = vec!["127.0.0.1:2121".parse().unwrap()];
        moved.workers = 9;
        moved.ftp.limits.max_sessions_per_ip = 4;
        assert_eq!(live.offer(moved), ReloadOutcome::NeedsRestart(vec!["workers", "ftp.listen"]));
        assert_eq!(worker.borrow().ftp.limits.max_sessions_per_ip, 3, "a refused reload changes nothing");
    }
}
