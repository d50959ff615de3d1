//! The temporary files of atomic uploads: their names, the rule that keeps them out of every
//! client's sight, and the sweep of those a crash left behind.
//!
//! An upload writes `.ferry-part-<16 hex>-<start of the final name>` (at most NAME_MAX bytes,
//! so every name that fits the file system can be uploaded) and holds an exclusive `flock`
//! on it until its file is closed. The kernel drops that lock when the process dies, so a
//! file of this pattern that can be locked belongs to no running upload, in this process or
//! another one sharing the tree: that is what makes a sweep safe while uploads run.

use super::sys;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};
use std::time::Duration;

/// What every temporary name starts with.
const PREFIX: &[u8] = b".ferry-part-";
/// Hex digits of the random part.
const RANDOM_DIGITS: usize = 16;
/// Hex digits ending the temporary names of earlier versions, `.NAME.ferry-part-XXXXXXXX`:
/// a crash before an upgrade left files of that form.
const LEGACY_DIGITS: usize = 8;

/// The longest name when the file system does not say (Linux's NAME_MAX).
pub(super) const DEFAULT_NAME_MAX: usize = 255;

/// A temporary file not written for this long, and not locked, is swept when its directory
/// is listed. A running upload keeps its mtime fresh, and one stalled this long has
/// outlived any data timeout; the lock is checked anyway.
pub(super) const ABANDONED_AFTER: Duration = Duration::from_secs(60 * 60);

fn lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `name` has the form of an upload's temporary file, of this version or an
/// earlier one. Such names are hidden from listings, not found by lookups, and refused as
/// new names, whatever the protocol.
pub fn is_upload_temp(name: &[u8]) -> bool {
    let current = name.len() > PREFIX.len() + RANDOM_DIGITS
        && name.starts_with(PREFIX)
        && lower_hex(&name[PREFIX.len()..PREFIX.len() + RANDOM_DIGITS])
        && name[PREFIX.len() + RANDOM_DIGITS] == b'-';
    let tail = PREFIX.len() + LEGACY_DIGITS;
    let legacy = name.len() > tail + 1
        && name.starts_with(b".")
        && name[name.len() - tail..].starts_with(PREFIX)
        && lower_hex(&name[name.len() - LEGACY_DIGITS..]);
    current || legacy
}

/// The temporary name of an upload to `final_name`, at most `name_max` bytes: as much of the
/// final name as fits after the prefix, for an operator to recognise, cut where a UTF-8
/// character starts.
pub(super) fn temp_name(final_name: &OsStr, random: u64, name_max: usize) -> OsString {
    let mut name = [PREFIX, format!("{random:016x}-").as_bytes()].concat();
    let whole = final_name.as_bytes();
    let mut cut = whole.len().min(name_max.saturating_sub(name.len()));
    while cut > 0 && cut < whole.len() && whole[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    name.extend_from_slice(&whole[..cut]);
    OsString::from_vec(name)
}

/// ENOENT when a component of `rel` is a temporary name: to a client it does not exist.
pub(super) fn refuse_in_path(rel: &Path) -> io::Result<()> {
    let hidden = rel.components().any(|c| matches!(c, Component::Normal(n) if is_upload_temp(n.as_bytes())));
    if hidden {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    Ok(())
}

/// What became of a temporary file a sweep looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Removed,
    /// A running upload holds it.
    InUse,
    /// Written too recently, not a regular file, or not removable.
    Kept,
}

/// Removes the temporary file `name` in `dir` when it is a regular file not written for
/// `idle` that no upload holds.
pub(super) fn remove_if_abandoned(dir: BorrowedFd<'_>, name: &OsStr, idle: Duration) -> Fate {
    let stat_now = || fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW);
    // Type and age from the name first: a device or FIFO is never opened. (With no idle time
    // asked for, a clock set back since the write does not keep the file.)
    let Ok(st) = stat_now() else { return Fate::Kept };
    let recent = !idle.is_zero() && seconds_since(st.st_mtime) < idle.as_secs() as i64;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || recent {
        return Fate::Kept;
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let Ok(file) = sys::openat(dir, Path::new(name), flags, Mode::empty()) else { return Fate::Kept };
    if sys::try_lock(file.as_fd()).is_err() {
        return Fate::InUse;
    }
    // Removed only while the name still leads to the file this lock is on.
    let same = |a: &nix::sys::stat::FileStat, b: &nix::sys::stat::FileStat| {
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    };
    match (fstat(file.as_raw_fd()), stat_now()) {
        (Ok(locked), Ok(named)) if same(&locked, &named) => {}
        _ => return Fate::Kept,
    }
    let removed =
        nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok();
    if removed {
        Fate::Removed
    } else {
        Fate::Kept
    }
}

fn seconds_since(unix_secs: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now - unix_secs
}

/// How far a sweep of whole trees goes, so that a huge tree cannot hold up start-up: what it
/// does not reach is swept when listed, [`ABANDONED_AFTER`] after its last write.
#[derive(Debug, Clone, Copy)]
pub struct SweepBounds {
    /// Directory levels below each root.
    pub depth: usize,
    /// Directory entries read in all the roots together.
    pub entries: usize,
}

impl SweepBounds {
    /// The start-up sweep's: uploads land in shallow directories; 100,000 entries read in
    /// well under a second from a warm cache.
    pub const START: SweepBounds = SweepBounds { depth: 8, entries: 100_000 };
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Temporary files removed.
    pub removed: usize,
    /// Temporary files a running upload holds, left alone.
    pub in_use: usize,
    /// Directory entries read.
    pub entries: usize,
    /// The bounds stopped the walk before it saw everything.
    pub cut_short: bool,
}

/// Removes every temporary upload file no running upload holds under each of `roots`
/// (a directory reached twice is walked once), within `bounds`. Symlinks are not followed.
pub fn sweep_upload_temps<'a>(
    roots: impl IntoIterator<Item = &'a super::Root>,
    bounds: SweepBounds,
) -> SweepReport {
    let mut report = SweepReport::default();
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        let Ok(st) = fstat(root.as_fd().as_raw_fd()) else { continue };
        if !seen.insert((st.st_dev, st.st_ino)) {
            continue;
        }
        if let Ok(dir) = root.open_at(Path::new(""), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) {
            sweep_dir(dir, bounds.depth, bounds.entries, &mut report);
        }
    }
    report
}

fn sweep_dir(dir: OwnedFd, depth_left: usize, entries: usize, report: &mut SweepReport) {
    // The stream reads through a duplicate; `dir` stays ours for the *at calls.
    let Ok(mut stream) = dir.try_clone().map_err(drop).and_then(|d| nix::dir::Dir::from(d).map_err(drop))
    else {
        return;
    };
    for entry in stream.iter() {
        let Ok(entry) = entry else { return };
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        if report.entries >= entries {
            report.cut_short = true;
            return;
        }
        report.entries += 1;
        if is_upload_temp(name.as_bytes()) {
            match remove_if_abandoned(dir.as_fd(), name, Duration::ZERO) {
                Fate::Removed => report.removed += 1,
                Fate::InUse => report.in_use += 1,
                Fate::Kept => {}
            }
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            None => fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
        };
        if !is_dir {
            continue;
        }
        if depth_left == 0 {
            report.cut_short = true;
            continue;
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if let Ok(sub) = sys::openat(dir.as_fd(), Path::new(name), flags, Mode::empty()) {
            sweep_dir(sub, depth_left - 1, entries, report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Root;
    use std::time::SystemTime;

    #[test]
    fn the_pattern_and_only_it_is_a_temporary_name() {
        for name in [
            ".ferry-part-0123456789abcdef-firmware.bin",
            ".ferry-part-0123456789abcdef-",
            ".firmware.bin.ferry-part-0123abcd",
        ] {
            assert!(is_upload_temp(name.as_bytes()), "{name}");
        }
        for name in [
            "firmware.bin",
            ".ferry-part-notes",
            ".ferry-part-0123456789ABCDEF-x",
            ".ferry-part-0123456789abcde-x",
            "ferry-part-0123456789abcdef-x",
            "x.ferry-part-0123abcd",
            "..ferry-part-0123abcd",
            ".x.ferry-part-0123abcg",
        ] {
            assert!(!is_upload_temp(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn temporary_names_fit_name_max_and_keep_the_start_of_the_name() {
        let short = temp_name(OsStr::new("fw.bin"), 0xfeed, 255);
        assert_eq!(short, ".ferry-part-000000000000feed-fw.bin");
        let longest = "n".repeat(255);
        let t = temp_name(OsStr::new(&longest), u64::MAX, 255);
        assert_eq!(t.len(), 255);
        assert!(t.as_bytes().ends_with(&longest.as_bytes()[..255 - 29]));
        // Cut where a character starts: 1 + 2k bytes of "aéé…" never split an é.
        let accented = format!("a{}", "é".repeat(127));
        for max in [254, 255, 100, 31, 30] {
            let t = temp_name(OsStr::new(&accented), 7, max);
            assert!(t.len() <= max && t.len() >= max - 1, "{max}: {}", t.len());
            assert!(t.to_str().is_some(), "{max}: cut inside a character");
        }
        for name in [&longest, &accented, "x"] {
            assert!(is_upload_temp(temp_name(OsStr::new(name), 1, 255).as_bytes()));
        }
    }

    #[test]
    fn paths_through_a_temporary_name_are_not_found() {
        assert!(refuse_in_path(Path::new("a/b/fw.bin")).is_ok());
        for rel in [
            ".ferry-part-0123456789abcdef-x",
            "a/.x.ferry-part-0123abcd/b",
            "/up/.ferry-part-0123456789abcdef-",
        ] {
            assert_eq!(
                refuse_in_path(Path::new(rel)).unwrap_err().raw_os_error(),
                Some(libc::ENOENT),
                "{rel}"
            );
        }
    }

    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn only_unlocked_regular_files_idle_long_enough_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let fate = |name: &str, idle| remove_if_abandoned(dir.as_fd(), OsStr::new(name), idle);
        let temp = |n: u8| format!(".ferry-part-{n:016x}-f");
        for n in 0..3 {
            std::fs::write(d.path().join(temp(n)), b"x").unwrap();
        }
        age(&d.path().join(temp(1)), 2 * ABANDONED_AFTER.as_secs());
        age(&d.path().join(temp(2)), 2 * ABANDONED_AFTER.as_secs());
        let held = std::fs::File::open(d.path().join(temp(2))).unwrap();
        sys::try_lock(held.as_fd()).unwrap();
        assert_eq!(fate(&temp(0), ABANDONED_AFTER), Fate::Kept, "written recently");
        assert_eq!(fate(&temp(1), ABANDONED_AFTER), Fate::Removed);
        assert_eq!(fate(&temp(2), ABANDONED_AFTER), Fate::InUse, "a running upload holds it");
        assert_eq!(fate(&temp(0), Duration::ZERO), Fate::Removed);
        drop(held);
        assert_eq!(fate(&temp(2), Duration::ZERO), Fate::Removed, "its process is gone");
        std::fs::create_dir(d.path().join(temp(3))).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join(temp(4))).unwrap();
        nix::unistd::mkfifo(&d.path().join(temp(5)), Mode::from_bits_truncate(0o600)).unwrap();
        for n in 3..6 {
            assert_eq!(fate(&temp(n), Duration::ZERO), Fate::Kept, "not a regular file");
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }

    #[test]
    fn start_up_sweeps_stay_within_their_bounds() {
        let d = tempfile::tempdir().unwrap();
        let temp = ".ferry-part-0123456789abcdef-f";
        let deep = d.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        for dir in [d.path(), &d.path().join("a"), &deep] {
            std::fs::write(dir.join(temp), b"x").unwrap();
            std::fs::write(dir.join("kept.bin"), b"x").unwrap();
        }
        std::os::unix::fs::symlink(&deep, d.path().join("link")).unwrap();
        let root = Root::open(d.path()).unwrap();
        let held = std::fs::File::open(d.path().join("a").join(temp)).unwrap();
        sys::try_lock(held.as_fd()).unwrap();

        // Two levels: the top and `a` (in use), not `a/b/c`; the root given twice is walked once.
        let report = sweep_upload_temps([&root, &root], SweepBounds { depth: 1, entries: 100 });
        assert_eq!((report.removed, report.in_use, report.cut_short), (1, 1, true), "{report:?}");
        assert!(!d.path().join(temp).exists());
        assert!(deep.join(temp).exists(), "below the depth bound, and not reached through the symlink");

        let report = sweep_upload_temps([&root], SweepBounds { depth: 8, entries: 3 });
        assert_eq!(report.entries, 3);
        assert!(report.cut_short);

        drop(held);
        let report = sweep_upload_temps([&root], SweepBounds::START);
        assert_eq!((report.removed, report.in_use, report.cut_short), (2, 0, false), "{report:?}");
        for dir in [d.path(), &d.path().join("a"), &deep] {
            assert!(dir.join("kept.bin").exists() && !dir.join(temp).exists());
        }
    }
}
