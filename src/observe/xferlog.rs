//! The transfer log in wu-ftpd `xferlog` format: one line per completed or aborted FTP or
//! TFTP transfer, appended to a file that SIGHUP reopens (so logrotate can move it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Direction of a transfer, as xferlog writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Download (`o`).
    Outgoing,
    /// Upload (`i`).
    Incoming,
}

/// Who did the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Anonymous user (`a`).
    Anonymous,
    /// Virtual or real user (`r`).
    Real,
}

/// One finished transfer.
#[derive(Debug, Clone)]
pub struct XferRecord<'a> {
    /// When it ended.
    pub end: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Client address.
    pub remote: IpAddr,
    /// Bytes moved.
    pub bytes: u64,
    /// Path as the client named it (virtual path).
    pub path: &'a [u8],
    /// Binary (`b`) or ASCII (`a`).
    pub binary: bool,
    /// Download or upload.
    pub direction: Direction,
    /// Anonymous or real user.
    pub access: AccessMode,
    /// User name (for anonymous users: the identity they gave, or `anonymous`).
    pub user: &'a str,
    /// `ftp` or `tftp`.
    pub service: &'a str,
    /// Completed (`c`) or incomplete (`i`).
    pub complete: bool,
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Mon Nov 24 01:19:52 2026` (ctime form, UTC).
fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// Makes a field safe for a space-separated line: whitespace and control bytes become `_`
/// (wu-ftpd leaves them raw, which breaks every parser).
fn field(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let clean: String =
        text.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

impl XferRecord<'_> {
    /// The xferlog line, without the trailing newline.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {} _ {} {} {} {} 0 * {}",
            ctime(self.end),
            self.duration.as_secs().max(1),
            self.remote.to_canonical(),
            self.bytes,
            field(self.path),
            if self.binary { 'b' } else { 'a' },
            match self.direction {
                Direction::Outgoing => 'o',
                Direction::Incoming => 'i',
            },
            match self.access {
                AccessMode::Anonymous => 'a',
                AccessMode::Real => 'r',
            },
            field(self.user.as_bytes()),
            field(self.service.as_bytes()),
            if self.complete { 'c' } else { 'i' },
        )
    }
}

/// The open transfer log. Written once per finished transfer (not per packet), so one
/// mutex around the file is cheap; each line is a single `write` on an O_APPEND file.
#[derive(Debug)]
pub struct Xferlog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Xferlog {
    /// Opens (creating) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Xferlog> {
        let file = Self::open_file(path)?;
        Ok(Xferlog { path: path.to_path_buf(), file: Mutex::new(Some(file)) })
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().create(true).append(true).mode(0o640).open(path)
    }

    /// Appends one record; errors are reported to the caller's log, never fatal.
    pub fn write(&self, record: &XferRecord<'_>) -> std::io::Result<()> {
        let mut line = record.line();
        line.push('\n');
        let mut guard = self.file.lock().map_err(|_| std::io::Error::other("xferlog lock poisoned"))?;
        match guard.as_mut() {
            Some(f) => f.write_all(line.as_bytes()),
            None => Err(std::io::Error::other("xferlog is closed")),
        }
    }

    /// Hands a root-owned log (just created by a root start) to `uid`, keeping its group, so
    /// the dropped server can reopen it on SIGHUP when it was not rotated, or when logrotate's
    /// `create` made the new file with the old one's owner.
    pub fn give_root_owned_to(&self, uid: nix::unistd::Uid) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let guard = self.file.lock().map_err(|_| std::io::Error::other("xferlog lock poisoned"))?;
        let Some(file) = guard.as_ref() else { return Ok(()) };
        // Only a plain file: a path such as /dev/null must never change hands.
        let meta = file.metadata()?;
        if meta.uid() != 0 || !meta.is_file() {
            return Ok(());
        }
        nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(file), Some(uid), None)
            .map_err(std::io::Error::from)
    }

    /// Reopens the file at its path (after logrotate moved it).
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = Self::open_file(&self.path)?;
        if let Ok(mut guard) = self.file.lock() {
            *guard = Some(fresh);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &[u8]) -> XferRecord<'_> {
        XferRecord {
            end: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_483_192), // 2026-11-24 01:19:52 UTC
            duration: Duration::from_millis(2500),
            remote: "::ffff:192.0.2.7".parse().unwrap(),
            bytes: 1234,
            path,
            binary: true,
            direction: Direction::Outgoing,
            access: AccessMode::Anonymous,
            user: "anonymous",
            service: "ftp",
            complete: true,
        }
    }

    #[test]
    fn formats_the_wu_ftpd_fields() {
        assert_eq!(
            record(b"/pub/fw.bin").line(),
            "Tue Nov 24 01:19:52 2026 2 192.0.2.7 1234 /pub/fw.bin b _ o a anonymous ftp 0 * c"
        );
        assert_eq!(ctime(SystemTime::UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
        assert_eq!(
            ctime(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue Feb 29 00:00:00 2000"
        );
    }

    #[test]
    fn every_line_has_eighteen_fields_whatever_the_name() {
        for name in [&b"a b\tc\nd"[..], b"", "caf\u{e9}.txt".as_bytes(), b"\xff\xfe"] {
            let line = record(name).line();
            assert_eq!(line.split(' ').filter(|f| !f.is_empty()).count(), 18, "{line}");
        }
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        let log = Xferlog::open(&path).unwrap();
        log.write(&record(b"/one")).unwrap();
        std::fs::rename(&path, dir.path().join("xferlog.1")).unwrap();
        log.write(&record(b"/two")).unwrap(); // still into the moved file
        log.reopen().unwrap();
        log.write(&record(b"/three")).unwrap();
        let old = std::fs::read_to_string(dir.path().join("xferlog.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("/one") && old.contains("/two") && !old.contains("/three"));
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("/three"));
    }
}
