//! Confinement of every path under a served root, enforced by the kernel: all opens go
//! through openat2 with RESOLVE_IN_ROOT relative to a directory fd opened at start-up, so
//! `..`, absolute paths and symlinks cannot reach outside, whatever the protocol layer does.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// A directory every path of a session or transfer is resolved in.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

fn resolve_flags() -> ResolveFlag {
    // IN_ROOT: `..` and absolute symlinks stop at the root, like a chroot.
    // NO_MAGICLINKS: /proc/self/fd-style links cannot jump anywhere.
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl Root {
    /// Opens `path` as a root. Done before the privilege drop, so the service user needs no
    /// search permission on the directories above it.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        // O_PATH ignores the access mode; std adds O_CLOEXEC.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(path)?;
        Ok(Root { dir: dir.into(), path: path.to_path_buf() })
    }

    /// The directory this root was opened from (for logs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory fd.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Opens `rel` (taken relative to the root whatever its form) with `flags` and `mode`.
    /// A path through an upload's temporary file is not found (see [`is_upload_temp`]).
    pub fn open_at(&self, rel: &Path, flags: OFlag, mode: Mode) -> std::io::Result<OwnedFd> {
        temp::refuse_in_path(rel)?;
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).mode(mode).resolve(resolve_flags());
        sys::openat2(self.dir.as_fd(), rel, how)
    }

    /// Opens the directory holding `rel`'s last component, for the `*at` calls that create,
    /// remove or rename names (those take a parent fd and a plain name).
    /// An upload's temporary file is not found by that name either.
    pub fn parent_of(&self, rel: &Path) -> std::io::Result<(OwnedFd, PathBuf)> {
        temp::refuse_in_path(rel)?;
        let name = match rel.components().next_back() {
            Some(Component::Normal(name)) => PathBuf::from(name),
            _ => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.open_at(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
        Ok((dir, name))
    }

    /// As [`Root::parent_of`] for a name about to be made (a directory, a rename's target, an
    /// upload): one of the temporary-file pattern is refused as an invalid name, so that no
    /// client can plant a file that would be hidden and swept.
    pub fn parent_for_new(&self, rel: &Path) -> std::io::Result<(OwnedFd, PathBuf)> {
        if rel.file_name().is_some_and(|n| is_upload_temp(n.as_bytes())) {
            return Err(error::kind_error(FileErrorKind::InvalidName));
        }
        self.parent_of(rel)
    }
}

mod case;
mod error;
mod ops;
// Raw openat2/openat hand back fds to own; utimensat(AT_EMPTY_PATH) and a flock that lasts as
// long as the open file have no safe wrapper.
#[allow(unsafe_code)]
mod sys;
mod temp;
pub use error::{classify, FileErrorKind};
pub use ops::{DirEntry, UploadTarget, WriteMode};
pub use temp::{is_upload_temp, sweep_upload_temps, SweepBounds, SweepReport};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(root: &Root, rel: &str) -> std::io::Result<String> {
        let fd = root.open_at(Path::new(rel), OFlag::O_RDONLY, Mode::empty())?;
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn nothing_resolves_outside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), "outside").unwrap();
        let served = outer.path().join("served");
        std::fs::create_dir(&served).unwrap();
        std::fs::write(served.join("inside"), "inside").unwrap();
        std::os::unix::fs::symlink("../secret", served.join("rel-link")).unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret"), served.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("/inside", served.join("rooted-link")).unwrap();
        let root = Root::open(&served).unwrap();

        assert_eq!(read(&root, "inside").unwrap(), "inside");
        assert_eq!(read(&root, "/inside").unwrap(), "inside", "absolute paths are taken under the root");
        assert_eq!(read(&root, "../../inside").unwrap(), "inside", ".. stops at the root");
        assert!(read(&root, "../secret").is_err());
        assert!(read(&root, "rel-link").is_err(), "a relative symlink cannot climb out");
        assert!(read(&root, "abs-link").is_err(), "an absolute symlink is re-rooted, not followed out");
        assert_eq!(read(&root, "rooted-link").unwrap(), "inside");
        assert!(read(&root, "/proc/self/root/etc/hostname").is_err());
    }

    #[test]
    fn a_climbing_lookup_is_not_failed_by_renames_elsewhere() {
        // With RESOLVE_IN_ROOT, the kernel answers EAGAIN to a `..` walk that any rename on
        // the system raced; the open retries rather than fail the client's request.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("target"), "t").unwrap();
        std::os::unix::fs::symlink("../target", dir.path().join("sub/link")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let busy = tempfile::tempdir().unwrap();
        std::fs::write(busy.path().join("a"), "").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let (stop, p) = (std::sync::Arc::clone(&stop), busy.path().to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(p.join("a"), p.join("b")).unwrap();
                    std::fs::rename(p.join("b"), p.join("a")).unwrap();
                }
            })
        };
        let failed = (0..20_000).filter(|_| read(&root, "sub/link").is_err()).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(failed, 0, "opens through `..` failed while renames ran");
    }

    #[test]
    fn parent_of_gives_a_dir_and_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let (_fd, name) = root.parent_of(Path::new("a/new")).unwrap();
        assert_eq!(name, PathBuf::from("new"));
        assert!(root.parent_of(Path::new("..")).is_err());
        assert!(root.parent_of(Path::new("")).is_err());
    }
}
