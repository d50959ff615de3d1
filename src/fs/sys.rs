//! The raw calls of the confinement layer, wrapped so that each hands back an fd it owns or
//! borrows one for no longer than its argument lives: the only `unsafe` under `fs/`.

use nix::fcntl::{OFlag, OpenHow};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Tries of an openat2 that the kernel answered EAGAIN.
const OPENAT2_TRIES: usize = 16;

/// openat2(2) of `path` relative to `dir`, resolved as `how` says.
///
/// With RESOLVE_IN_ROOT a `..` (one a symlink leads to included) fails with EAGAIN when a
/// rename or mount anywhere on the system raced the lookup, since the kernel cannot then prove
/// the walk stayed inside; openat2(2) says to try again. Without the retry a request through
/// such a link got ERROR 0 while an rsync ran elsewhere (seen in the full test suite).
pub fn openat2(dir: BorrowedFd<'_>, path: &Path, how: OpenHow) -> io::Result<OwnedFd> {
    let mut tries = 1;
    let fd = loop {
        match nix::fcntl::openat2(dir.as_raw_fd(), path, how) {
            Err(nix::errno::Errno::EAGAIN) if tries < OPENAT2_TRIES => tries += 1,
            other => break other?,
        }
    };
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat(2) of the plain `name` in `dir`.
pub fn openat(dir: BorrowedFd<'_>, name: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags, mode)?;
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the modification time of what `fd` refers to (an O_PATH fd will do), leaving the
/// access time alone. nix's utimensat takes a path, not AT_EMPTY_PATH on an fd.
pub fn set_mtime(fd: BorrowedFd<'_>, unix_secs: i64) -> io::Result<()> {
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: unix_secs as libc::time_t, tv_nsec: 0 },
    ];
    let empty = c"";
    // SAFETY: `fd` is open for the call (borrowed); the path and times are valid locals.
    let r = unsafe { libc::utimensat(fd.as_raw_fd(), empty.as_ptr(), times.as_ptr(), libc::AT_EMPTY_PATH) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// flock(LOCK_EX | LOCK_NB) on what `fd` refers to. The lock belongs to the open file
/// description: it lasts until every fd of it is closed, or the process dies. (nix's `Flock`
/// unlocks when dropped, and wants to own the fd.)
pub fn try_lock(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is open for the call (borrowed); flock takes no pointers.
    let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
