//! The CPU quota of Ferry's own cgroup (v2 `cpu.max`), read once at start: a worker that
//! busy-polls for a lone TFTP client spends quota, and a throttled cgroup stalls every worker.
//!
//! Only reported, never acted on: an operator may well want the polling under a generous
//! quota, and a quota that throttles shows in `cpu.stat`, not here.

use crate::config::Config;
use std::path::{Path, PathBuf};
use tracing::warn;

/// Warns when TFTP busy polling is on and the cgroup has a CPU quota that polling spends.
pub fn warn_if_polling(config: &Config) {
    if !config.tftp.enabled || config.tftp.busy_poll_us == 0 {
        return;
    }
    if let Some(cpus) = quota_cpus() {
        warn!(
            cpus,
            busy_poll_us = config.tftp.busy_poll_us,
            "Ferry's cgroup has a CPU quota: a worker polling for a lone TFTP client spends it \
             (set tftp.busy_poll_us = 0 if the quota throttles)"
        );
    }
}

/// CPUs' worth of time per period the cgroup may use, when it has a quota.
fn quota_cpus() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let dir = own_dir(&cgroup)?;
    let max = std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(dir).join("cpu.max")).ok()?;
    parse_cpu_max(&max)
}

/// The cgroup v2 directory of this process, relative to the cgroup root (`0::/a/b` -> `a/b`).
fn own_dir(proc_self_cgroup: &str) -> Option<PathBuf> {
    let path = proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(path.trim_start_matches('/')))
}

/// `cpu.max` is `QUOTA PERIOD` in microseconds, `max` for no quota.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota: f64 = words.next()?.parse().ok()?;
    let period: f64 = words.next()?.parse().ok()?;
    (period > 0.0).then_some(quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_their_absence_are_read() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("200000 100000"), Some(2.0));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cpu_max("100 0"), None);
        assert_eq!(
            own_dir("0::/system.slice/ferry.service\n"),
            Some(PathBuf::from("system.slice/ferry.service"))
        );
        assert_eq!(own_dir("0::/\n"), Some(PathBuf::from("")));
        assert_eq!(own_dir("1:name=systemd:/x\n"), None, "cgroup v1 only: not read");
    }
}
