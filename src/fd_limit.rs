//! The descriptor limit at start: every FTP session and TFTP transfer holds descriptors, so the
//! soft `RLIMIT_NOFILE` is raised to the hard one, and a configuration that needs more is named.
//!
//! Raising the soft limit needs no privilege (the hard one would); Go's runtime and nginx's
//! `worker_rlimit_nofile` do the same. Ferry never uses `select(2)`, whose `FD_SETSIZE` is the
//! usual reason to keep the soft limit low.

use crate::config::Config;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tracing::{info, warn};

/// Descriptors a TFTP transfer may hold at once: its socket and, until the file cache has the
/// file, the file.
const PER_TRANSFER: u64 = 2;
/// Descriptors an FTP session may hold at once: control, passive listener, data, file.
const PER_SESSION: u64 = 4;
/// Descriptors the server holds whatever its load: listeners, rings, epoll, eventfds, logs,
/// roots, per worker and in all.
const BASE: u64 = 256;

/// Raises the soft limit to the hard one and warns when the configuration's limits may need
/// more descriptors than that; returns the soft limit in force.
pub fn raise(config: &Config) -> u64 {
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                info!(from = soft, to = hard, "descriptor limit raised to the hard limit");
                hard
            }
            Err(e) => {
                warn!(soft, hard, "cannot raise the descriptor limit: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            warn!("cannot read the descriptor limit: {e}");
            return 0;
        }
    };
    if let Some((need, keys)) = shortfall(config, limit) {
        warn!(
            limit,
            need,
            "the descriptor limit (RLIMIT_NOFILE) is below what {keys} may need at once: \
             requests beyond it are refused as busy; raise LimitNOFILE (systemd) or --ulimit nofile (containers)"
        );
    }
    limit
}

/// What the configured limits may need, and the keys that set it, when `limit` is short.
fn shortfall(config: &Config, limit: u64) -> Option<(u64, String)> {
    let mut need = BASE;
    let mut keys = Vec::new();
    if config.ftp.enabled {
        need += config.ftp.limits.max_sessions as u64 * PER_SESSION;
        keys.push(format!("ftp.limits.max_sessions = {}", config.ftp.limits.max_sessions));
    }
    if config.tftp.enabled {
        need += config.tftp.max_transfers as u64 * PER_TRANSFER;
        keys.push(format!("tftp.max_transfers = {}", config.tftp.max_transfers));
    }
    (need > limit).then(|| (need, keys.join(" and ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortfall_names_the_keys_that_need_the_descriptors() {
        let mut c = Config::default();
        c.ftp.limits.max_sessions = 100;
        c.tftp.max_transfers = 10_000;
        let (need, keys) = shortfall(&c, 20_000).expect("20,656 needed");
        assert_eq!(need, BASE + 400 + 20_000);
        assert!(
            keys.contains("tftp.max_transfers = 10000") && keys.contains("ftp.limits.max_sessions = 100")
        );
        assert_eq!(shortfall(&c, 1 << 20), None);
        c.tftp.enabled = false;
        assert_eq!(shortfall(&c, 20_000), None, "without TFTP it fits");
    }
}
