//! The allowed range of every integer key, in one table checked at load time.
//! The bounds are far past anything a production server needs, and well inside what timers,
//! counters and allocations survive, so a mistyped value fails here instead of in a worker.

use super::{Config, ConfigError};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
const GIB: u64 = 1 << 30;

/// One integer key and its inclusive range.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Dotted key path, as in the TOML file.
    pub key: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
    /// What the value counts, for the error message.
    pub unit: &'static str,
    read: fn(&Config) -> u64,
}

const fn bound(key: &'static str, min: u64, max: u64, unit: &'static str, read: fn(&Config) -> u64) -> Bound {
    Bound { key, min, max, unit, read }
}

/// Every integer key. Relations between keys (`max_sessions_per_ip <= max_sessions`, ...)
/// are checked by their sections.
pub const BOUNDS: &[Bound] = &[
    bound("workers", 0, 1024, "threads", |c| c.workers as u64),
    bound("drain_timeout_secs", 0, DAY, "seconds", |c| c.drain_timeout_secs),
    bound("ftp.active_source_port", 0, 65535, "(port; 0 = ephemeral)", |c| {
        u64::from(c.ftp.active_source_port)
    }),
    bound("ftp.max_line_len", 512, 65536, "bytes", |c| c.ftp.max_line_len as u64),
    bound("ftp.active.connect_timeout_secs", 1, HOUR, "seconds", |c| c.ftp.active.connect_timeout_secs),
    bound("ftp.passive.accept_timeout_secs", 1, HOUR, "seconds", |c| c.ftp.passive.accept_timeout_secs),
    bound("ftp.passive.max_ports_per_ip", 1, 65535, "listeners", |c| c.ftp.passive.max_ports_per_ip as u64),
    bound("ftp.limits.max_sessions", 1, 1_000_000, "sessions", |c| c.ftp.limits.max_sessions as u64),
    bound("ftp.limits.max_sessions_per_ip", 1, 1_000_000, "sessions", |c| {
        c.ftp.limits.max_sessions_per_ip as u64
    }),
    bound("ftp.limits.idle_timeout_secs", 1, WEEK, "seconds", |c| c.ftp.limits.idle_timeout_secs),
    bound("ftp.limits.data_timeout_secs", 1, WEEK, "seconds", |c| c.ftp.limits.data_timeout_secs),
    bound("ftp.limits.login_failure_delay_ms", 0, 60_000, "milliseconds", |c| {
        c.ftp.limits.login_failure_delay_ms
    }),
    bound("ftp.limits.max_login_failures", 1, 1000, "failures", |c| {
        u64::from(c.ftp.limits.max_login_failures)
    }),
    // 100 GB/s is 800 Gbit/s: no link a worker serves is faster.
    bound("ftp.limits.rate_limit_session_bps", 0, 100_000_000_000, "bytes per second", |c| {
        c.ftp.limits.rate_limit_session_bps
    }),
    bound("ftp.limits.rate_limit_global_bps", 0, 100_000_000_000, "bytes per second", |c| {
        c.ftp.limits.rate_limit_global_bps
    }),
    bound("tftp.max_blksize", 8, 65464, "bytes (RFC 2348)", |c| u64::from(c.tftp.max_blksize)),
    bound("tftp.max_windowsize", 1, 65535, "blocks (RFC 7440)", |c| u64::from(c.tftp.max_windowsize)),
    bound("tftp.default_timeout_secs", 1, 255, "seconds (RFC 2349)", |c| {
        u64::from(c.tftp.default_timeout_secs)
    }),
    bound("tftp.max_retransmit_time_secs", 1, HOUR, "seconds", |c| c.tftp.max_retransmit_time_secs),
    bound("tftp.unproven_retransmits", 0, 10, "retransmissions", |c| u64::from(c.tftp.unproven_retransmits)),
    bound("tftp.max_transfers", 1, 1_000_000, "transfers", |c| c.tftp.max_transfers as u64),
    bound("tftp.requests_per_second_per_ip", 0, 100_000, "requests per second", |c| {
        u64::from(c.tftp.requests_per_second_per_ip)
    }),
    bound("tftp.netascii_max_bytes", 1, GIB, "bytes", |c| c.tftp.netascii_max_bytes),
    bound("tftp.netascii_memory_bytes", 1, 64 * GIB, "bytes", |c| c.tftp.netascii_memory_bytes),
    bound("tftp.cache_bytes", 0, 64 * GIB, "bytes", |c| c.tftp.cache_bytes),
    bound("tftp.cache_max_file_bytes", 0, 16 * GIB, "bytes", |c| c.tftp.cache_max_file_bytes),
    bound("tftp.busy_poll_us", 0, 10_000, "microseconds", |c| u64::from(c.tftp.busy_poll_us)),
    bound("tftp.write.quota_bytes", 0, 1024 * GIB, "bytes", |c| c.tftp.write.quota_bytes),
];

/// The first key outside its range, named with the range.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    for b in BOUNDS {
        let value = (b.read)(config);
        if !(b.min..=b.max).contains(&value) {
            return Err(ConfigError::invalid(
                b.key,
                format!("{value} is out of range: allowed {} to {} {}", b.min, b.max, b.unit),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_inside_every_range() {
        check(&Config::default()).expect("defaults");
    }

    #[test]
    fn the_error_names_key_value_and_range() {
        let mut c = Config::default();
        c.ftp.limits.idle_timeout_secs = u64::MAX;
        let err = check(&c).unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `ftp.limits.idle_timeout_secs`: 18446744073709551615 is out of range: allowed 1 to 604800 seconds"
        );
    }
}
