//! File operations under a [`Root`]: every one resolves its path with openat2 in the root
//! and then acts on a parent directory fd and a plain name, so no path string is ever
//! handed to a path-walking syscall. These are short metadata calls, done synchronously.

use super::error::{kind_error, FileErrorKind};
use super::{sys, temp, Root};
use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, Mode};
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One directory entry with its metadata, as `lstat` sees it (symlinks are not followed,
/// so a link pointing outside the root reveals nothing about its target).
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Entry name (no slash).
    pub name: OsString,
    /// lstat of the entry.
    pub stat: nix::sys::stat::FileStat,
    /// The link target when the entry is a symlink (shown in listings as `name -> target`).
    pub link_target: Option<OsString>,
}

/// How an upload opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create or truncate (STOR, TFTP WRQ with overwrite).
    Truncate,
    /// Create only; fail when the name exists (STOU, TFTP WRQ without overwrite).
    CreateNew,
    /// Create or append (APPE).
    Append,
    /// Create or open without truncating, to write at an offset (STOR after REST).
    Resume,
}

/// A file being uploaded. With `atomic`, the bytes go to a hidden temporary name and the
/// final name appears only on [`UploadTarget::commit`]; dropping it uncommitted removes it.
#[derive(Debug)]
pub struct UploadTarget {
    /// The open file to write.
    pub file: OwnedFd,
    parent: OwnedFd,
    final_name: PathBuf,
    temp_name: Option<PathBuf>,
    /// [`WriteMode::CreateNew`]: the commit must not replace a file that appeared meanwhile.
    no_replace: bool,
    keep_partial: bool,
    done: bool,
}

impl UploadTarget {
    /// Makes the upload visible under its final name (atomic uploads) and flushes it.
    /// A create-only upload fails with EEXIST when the final name appeared during the upload
    /// (the temporary file is then removed); the other file is left alone.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(temp) = &self.temp_name {
            // The data must be durable before the name points at it, or a crash could leave
            // an empty or partial file under the final name.
            nix::unistd::fdatasync(self.file.as_raw_fd())?;
            let flags = if self.no_replace { RenameFlags::RENAME_NOREPLACE } else { RenameFlags::empty() };
            nix::fcntl::renameat2(
                Some(self.parent.as_raw_fd()),
                temp.as_path(),
                Some(self.parent.as_raw_fd()),
                self.final_name.as_path(),
                flags,
            )?;
        }
        self.done = true;
        Ok(())
    }

    /// Ends an interrupted upload: removes a temporary file, or the partial file when
    /// `keep_partial` is off.
    pub fn abandon(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let name = match &self.temp_name {
            Some(temp) => Some(temp.clone()),
            None if !self.keep_partial => Some(self.final_name.clone()),
            None => None,
        };
        if let Some(name) = name {
            let _ = nix::unistd::unlinkat(
                Some(self.parent.as_raw_fd()),
                name.as_path(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

impl Drop for UploadTarget {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

impl Root {
    /// Metadata of `rel`, following symlinks inside the root.
    pub fn stat(&self, rel: &Path) -> io::Result<Metadata> {
        let fd = self.open_at(rel, OFlag::O_PATH, Mode::empty())?;
        std::fs::File::from(fd).metadata()
    }

    /// Opens a regular file for reading (refuses directories and other types).
    pub fn open_read(&self, rel: &Path) -> io::Result<(OwnedFd, Metadata)> {
        let fd = self.open_at(rel, OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK, Mode::empty())?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if !meta.is_file() {
            return Err(kind_error(FileErrorKind::NotRegular));
        }
        Ok((file.into(), meta))
    }

    /// Lists a directory (or a single non-directory entry, as `ls` does), without the
    /// temporary files of uploads; those abandoned for [`temp::ABANDONED_AFTER`] are removed.
    pub fn list(&self, rel: &Path) -> io::Result<Vec<DirEntry>> {
        self.list_matching(rel, &|_| true)
    }

    /// [`Root::list`] keeping only the names `keep` accepts, tested before anything is
    /// stat'ed or stored: a pattern over a huge directory costs memory for its matches only.
    pub fn list_matching(&self, rel: &Path, keep: &dyn Fn(&[u8]) -> bool) -> io::Result<Vec<DirEntry>> {
        let fd = self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty());
        let fd = match fd {
            Ok(fd) => fd,
            // A file, or a symlink whose target is not a directory inside the root: list the
            // entry itself, as `ls -l name` does.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ENOENT | libc::ELOOP)) => {
                let (parent, name) = self.parent_of(rel).map_err(|_| e)?;
                let name = name.as_os_str();
                return Ok(if keep(name.as_bytes()) { vec![entry_at(&parent, name)?] } else { Vec::new() });
            }
            Err(e) => return Err(e),
        };
        // The stream reads through a duplicate, so `fd` stays ours to stat the entries with
        // (fstatat does not touch the shared directory offset).
        let mut dir = nix::dir::Dir::from(fd.try_clone()?).map_err(io_err)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = std::ffi::OsStr::from_bytes(name);
            if !keep(name.as_bytes()) && !temp::is_upload_temp(name.as_bytes()) {
                continue;
            }
            if temp::is_upload_temp(name.as_bytes()) {
                // Never listed; one a crash left behind long ago goes now.
                temp::remove_if_abandoned(fd.as_fd(), name, temp::ABANDONED_AFTER);
                continue;
            }
            // An entry removed between readdir and stat is simply skipped.
            if let Ok(e) = entry_at(&fd, name) {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a directory.
    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let (parent, name) = self.parent_for_new(rel)?;
        nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), name.as_path(), Mode::from_bits_truncate(mode))
            .map_err(io_err)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, rel: &Path) -> io::Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        nix::unistd::unlinkat(Some(parent.as_raw_fd()), name.as_path(), nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(io_err)
    }

    /// Removes a file (not a directory).
    pub fn unlink(&self, rel: &Path) -> io::Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        nix::unistd::unlinkat(
            Some(parent.as_raw_fd()),
            name.as_path(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io_err)
    }

    /// Renames `from` to `to`, both under this root. Without `replace`, an existing `to` is
    /// left alone and the call fails with EEXIST (renameat2 RENAME_NOREPLACE, no race).
    pub fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_for_new(to)?;
        let flags = if replace { RenameFlags::empty() } else { RenameFlags::RENAME_NOREPLACE };
        nix::fcntl::renameat2(
            Some(from_dir.as_raw_fd()),
            from_name.as_path(),
            Some(to_dir.as_raw_fd()),
            to_name.as_path(),
            flags,
        )
        .map_err(io_err)
    }

    /// Changes permission bits (only the 0o7777 bits).
    pub fn chmod(&self, rel: &Path, mode: u32) -> io::Result<()> {
        // O_PATH fds cannot fchmod; open the entry itself without following a final symlink.
        let fd = self.open_at(rel, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty())?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io_err)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::sys::stat::fchmodat(
            None,
            proc_path.as_str(),
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io_err)
    }

    /// Sets the modification time (MFMT), leaving the access time alone.
    pub fn set_mtime(&self, rel: &Path, unix_secs: i64) -> io::Result<()> {
        let fd = self.open_at(rel, OFlag::O_PATH, Mode::empty())?;
        sys::set_mtime(fd.as_fd(), unix_secs)
    }

    /// Opens `rel` for an upload. `atomic` writes to a hidden temporary name first.
    pub fn open_upload(
        &self,
        rel: &Path,
        mode: WriteMode,
        atomic: bool,
        keep_partial: bool,
    ) -> io::Result<UploadTarget> {
        let (parent, final_name) = self.parent_for_new(rel)?;
        let base = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let perm = Mode::from_bits_truncate(0o644);
        let open = |name: &Path, flags: OFlag| sys::openat(parent.as_fd(), name, base | flags, perm);
        // Appends and resumes extend the existing file in place, so they cannot be atomic.
        let atomic = atomic && matches!(mode, WriteMode::Truncate | WriteMode::CreateNew);
        if atomic {
            let name_max = nix::unistd::fpathconf(&parent, nix::unistd::PathconfVar::NAME_MAX)
                .ok()
                .flatten()
                .map_or(temp::DEFAULT_NAME_MAX, |n| n as usize);
            // Refused now rather than by the rename once all the data has arrived.
            if final_name.as_os_str().len() > name_max {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            if mode == WriteMode::CreateNew
                && fstatat(Some(parent.as_raw_fd()), final_name.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok()
            {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            for _ in 0..16 {
                let temp = PathBuf::from(temp::temp_name(final_name.as_os_str(), rand::random(), name_max));
                match open(&temp, OFlag::O_EXCL) {
                    Ok(file) => {
                        // Held until the file is closed: the sweeps leave a locked file alone.
                        // The file is brand new, so nothing else holds it.
                        let _ = sys::try_lock(file.as_fd());
                        return Ok(UploadTarget {
                            file,
                            parent,
                            final_name,
                            temp_name: Some(temp),
                            no_replace: mode == WriteMode::CreateNew,
                            keep_partial,
                            done: false,
                        });
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let flags = match mode {
            WriteMode::Truncate => OFlag::O_TRUNC,
            WriteMode::CreateNew => OFlag::O_EXCL,
            WriteMode::Append => OFlag::O_APPEND,
            WriteMode::Resume => OFlag::empty(),
        };
        let file = open(&final_name, flags)?;
        Ok(UploadTarget {
            file,
            parent,
            final_name,
            temp_name: None,
            no_replace: false,
            keep_partial,
            done: false,
        })
    }
}

fn entry_at(dir: &impl AsFd, name: &std::ffi::OsStr) -> io::Result<DirEntry> {
    let stat = fstatat(Some(dir.as_fd().as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err)?;
    let link_target = if stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
        nix::fcntl::readlinkat(Some(dir.as_fd().as_raw_fd()), name).ok()
    } else {
        None
    };
    Ok(DirEntry { name: name.to_os_string(), stat, link_target })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::classify;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), b"aaa").unwrap();
        std::fs::write(dir.path().join("b.bin"), b"bb").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn lists_with_lstat_and_skips_dot_entries() {
        let (_d, root) = setup();
        let names: Vec<_> = root.list(Path::new("")).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec![OsString::from("b.bin"), "link".into(), "sub".into()]);
        let link = root.list(Path::new("link")).unwrap();
        assert_eq!(link[0].link_target.as_deref(), Some(std::ffi::OsStr::new("/etc/passwd")));
        assert_eq!(root.list(Path::new("sub/a.txt")).unwrap()[0].stat.st_size, 3);
        assert!(root.list(Path::new("missing")).is_err());
    }

    #[test]
    fn metadata_ops_stay_under_the_root() {
        let (d, root) = setup();
        root.mkdir(Path::new("sub/new"), 0o755).unwrap();
        assert!(d.path().join("sub/new").is_dir());
        assert_eq!(root.mkdir(Path::new("sub/new"), 0o755).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        root.rename(Path::new("b.bin"), Path::new("sub/new/b2.bin"), false).unwrap();
        std::fs::write(d.path().join("c.bin"), b"c").unwrap();
        let err = root.rename(Path::new("c.bin"), Path::new("sub/new/b2.bin"), false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "no replace without `replace`");
        assert_eq!(std::fs::read(d.path().join("sub/new/b2.bin")).unwrap(), b"bb");
        root.rename(Path::new("c.bin"), Path::new("sub/new/b2.bin"), true).unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/new/b2.bin")).unwrap(), b"c");
        assert!(d.path().join("sub/new/b2.bin").is_file());
        root.unlink(Path::new("sub/new/b2.bin")).unwrap();
        root.rmdir(Path::new("sub/new")).unwrap();
        assert!(root.rmdir(Path::new("sub")).is_err(), "not empty");
        root.set_mtime(Path::new("sub/a.txt"), 1_000_000_000).unwrap();
        assert_eq!(root.stat(Path::new("sub/a.txt")).unwrap().mtime(), 1_000_000_000);
        root.chmod(Path::new("sub/a.txt"), 0o600).unwrap();
        assert_eq!(root.stat(Path::new("sub/a.txt")).unwrap().mode() & 0o777, 0o600);
        assert!(root.open_read(Path::new("sub")).is_err(), "directories are not read as files");
        assert!(root.open_read(Path::new("link")).is_err(), "/etc/passwd is re-rooted and absent");
        assert!(root.unlink(Path::new("../../etc/hostname")).is_err());
        assert!(root.chmod(Path::new("link"), 0o777).is_err(), "no chmod through a symlink");
    }

    #[test]
    fn atomic_uploads_appear_only_on_commit() {
        let (d, root) = setup();
        let up = root.open_upload(Path::new("sub/up.bin"), WriteMode::Truncate, true, true).unwrap();
        std::fs::File::from(up.file.try_clone().unwrap()).write_all(b"partial").unwrap();
        assert!(!d.path().join("sub/up.bin").exists(), "not visible before commit");
        up.abandon();
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 1, "temp file removed");

        let up = root.open_upload(Path::new("sub/up.bin"), WriteMode::Truncate, true, true).unwrap();
        std::fs::File::from(up.file.try_clone().unwrap()).write_all(b"whole").unwrap();
        up.commit().unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/up.bin")).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 2);

        // A create-only upload does not replace a file that appeared while it ran.
        let up = root.open_upload(Path::new("sub/new.bin"), WriteMode::CreateNew, true, true).unwrap();
        std::fs::File::from(up.file.try_clone().unwrap()).write_all(b"late").unwrap();
        std::fs::write(d.path().join("sub/new.bin"), b"first").unwrap();
        assert_eq!(up.commit().unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(d.path().join("sub/new.bin")).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(d.path().join("sub")).unwrap().count(), 3, "temp file removed");
    }

    #[test]
    fn temporary_files_are_not_there_for_clients() {
        let (d, root) = setup();
        let temp = "sub/.ferry-part-0123456789abcdef-a.txt";
        std::fs::write(d.path().join(temp), b"partial").unwrap();
        let not_found = |r: io::Result<()>| assert_eq!(r.map_err(classify), Err(FileErrorKind::NotFound));
        let p = Path::new(temp);
        not_found(root.open_read(p).map(drop));
        not_found(root.stat(p).map(drop));
        not_found(root.list(p).map(drop));
        not_found(root.unlink(p));
        not_found(root.rename(p, Path::new("sub/b"), false));
        not_found(root.chmod(p, 0o600));
        not_found(root.set_mtime(p, 0));
        let names: Vec<_> = root.list(Path::new("sub")).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec![OsString::from("a.txt")], "hidden from listings");
        // Nor can a client make one, by any means.
        let invalid = |r: io::Result<()>| assert_eq!(r.map_err(classify), Err(FileErrorKind::InvalidName));
        let new = Path::new("sub/.ferry-part-fedcba9876543210-x");
        invalid(root.mkdir(new, 0o755));
        invalid(root.rename(Path::new("b.bin"), new, false));
        for mode in [WriteMode::Truncate, WriteMode::CreateNew, WriteMode::Append, WriteMode::Resume] {
            invalid(root.open_upload(new, mode, true, true).map(drop));
        }
        assert_eq!(std::fs::read(d.path().join(temp)).unwrap(), b"partial");
        // Listing its directory removes it once it has not been written for long.
        let old = std::time::SystemTime::now() - 2 * temp::ABANDONED_AFTER;
        std::fs::File::options().write(true).open(d.path().join(temp)).unwrap().set_modified(old).unwrap();
        root.list(Path::new("sub")).unwrap();
        assert!(!d.path().join(temp).exists());
    }

    #[test]
    fn atomic_uploads_take_every_name_that_fits() {
        let (d, root) = setup();
        let longest = "n".repeat(255);
        let up = root.open_upload(Path::new(&longest), WriteMode::CreateNew, true, true).unwrap();
        let listed: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(listed.iter().any(|n| temp::is_upload_temp(n.as_bytes())), "{listed:?}");
        assert_eq!(root.list(Path::new("")).unwrap().len(), 3, "the upload in progress is not listed");
        up.commit().unwrap();
        assert!(d.path().join(&longest).is_file());
        let err = root.open_upload(Path::new(&"n".repeat(256)), WriteMode::Truncate, true, true).unwrap_err();
        assert_eq!(classify(err), FileErrorKind::NameTooLong);
    }

    #[test]
    fn upload_modes() {
        let (d, root) = setup();
        let p = Path::new("sub/a.txt");
        assert_eq!(
            root.open_upload(p, WriteMode::CreateNew, false, true).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(root.open_upload(p, WriteMode::CreateNew, true, true).is_err());
        let up = root.open_upload(p, WriteMode::Append, false, true).unwrap();
        std::fs::File::from(up.file.try_clone().unwrap()).write_all(b"+").unwrap();
        up.commit().unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/a.txt")).unwrap(), b"aaa+");
        // Without keep_partial an abandoned plain upload is removed.
        let up = root.open_upload(Path::new("gone.bin"), WriteMode::Truncate, false, false).unwrap();
        up.abandon();
        assert!(!d.path().join("gone.bin").exists());
        // Uploads through a symlink as the final component are refused (O_NOFOLLOW).
        assert!(root.open_upload(Path::new("link"), WriteMode::Truncate, false, true).is_err());
    }
}
