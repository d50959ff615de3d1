//! The FTP session's file-system actions carried out under the account's [`Root`]: stat,
//! directory reads and metadata changes (short syscalls, done inline on the worker), plus
//! the mapping of stat data to [`FileMeta`]; errno values are read by [`fs::classify`].

use crate::fs::{self, DirEntry, Root};
use crate::ftp::{Action, FileKind, FileMeta, FsError, ListFormat, NameFilter, OpResult, VirtualPath};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Permission bits of directories made by MKD (before the umask).
const DIR_MODE: u32 = 0o755;

/// The path to hand to [`Root`] (openat2 RESOLVE_IN_ROOT confines it whatever it holds).
pub fn rel(path: &VirtualPath) -> &Path {
    Path::new(OsStr::from_bytes(path.relative()))
}

/// Seconds since the epoch now (for LIST's time-or-year column).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn kind_of(mode: u32) -> FileKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// A listing entry from an lstat'ed directory entry.
pub fn entry_meta(e: DirEntry) -> FileMeta {
    let st = e.stat;
    FileMeta {
        name: e.name.as_bytes().to_vec(),
        kind: kind_of(st.st_mode),
        size: st.st_size.max(0) as u64,
        mtime: st.st_mtime,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        dev: st.st_dev,
        ino: st.st_ino,
        link_target: e.link_target.map(|t| t.as_bytes().to_vec()),
    }
}

fn stat_meta(path: &VirtualPath, m: &std::fs::Metadata) -> FileMeta {
    FileMeta {
        name: path.file_name().unwrap_or(b"/").to_vec(),
        kind: kind_of(m.mode()),
        size: m.size(),
        mtime: m.mtime(),
        mode: m.mode(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        dev: m.dev(),
        ino: m.ino(),
        link_target: None,
    }
}

/// Reads `path` as a directory (or the one entry of a non-directory), names sorted; with
/// `glob`, only the names it accepts, shown with its prefix.
pub fn read_dir(
    root: &Root,
    path: &VirtualPath,
    hidden: bool,
    glob: Option<&NameFilter>,
) -> Result<Vec<FileMeta>, FsError> {
    let keep = |name: &[u8]| match glob {
        Some(g) => g.accepts(name, hidden),
        None => hidden || !name.starts_with(b"."),
    };
    // A pattern's parent must be a directory: `file/*` is no match against the file itself.
    if glob.is_some() && !root.stat(rel(path)).map_err(fs::classify)?.is_dir() {
        return Err(FsError::NotADirectory);
    }
    let entries = root.list_matching(rel(path), &keep).map_err(fs::classify)?;
    let prefix = glob.map_or(&[][..], |g| &g.prefix[..]);
    Ok(entries
        .into_iter()
        .map(entry_meta)
        .map(|mut m| {
            if !prefix.is_empty() {
                m.name.splice(0..0, prefix.iter().copied());
            }
            m
        })
        .collect())
}

/// The rendered text of a [`TransferKind::List`](crate::ftp::TransferKind::List) listing.
pub fn listing(
    root: &Root,
    path: &VirtualPath,
    format: ListFormat,
    hidden: bool,
    glob: Option<&NameFilter>,
) -> Result<Vec<u8>, FsError> {
    Ok(format.render_all(&read_dir(root, path, hidden, glob)?, now_unix()))
}

/// Carries out a metadata action; `None` for actions this module does not handle
/// (passwords, passive listeners, transfers).
pub fn run(root: &Root, action: &Action) -> Option<OpResult> {
    let done = |r: io::Result<()>| Some(OpResult::Done(r.map_err(fs::classify)));
    match action {
        Action::Stat { path } => {
            Some(OpResult::Stat(root.stat(rel(path)).map(|m| stat_meta(path, &m)).map_err(fs::classify)))
        }
        Action::ReadDir { path } => {
            Some(OpResult::Entries { entries: read_dir(root, path, true, None), now_unix: now_unix() })
        }
        Action::MakeDir { path } => done(root.mkdir(rel(path), DIR_MODE)),
        Action::RemoveDir { path } => done(root.rmdir(rel(path))),
        Action::Delete { path } => done(root.unlink(rel(path))),
        Action::Rename { from, to, replace } => done(root.rename(rel(from), rel(to), *replace)),
        Action::Chmod { path, mode } => done(root.chmod(rel(path), *mode)),
        Action::SetMtime { path, mtime } => done(root.set_mtime(rel(path), *mtime)),
        Action::VerifyPassword { .. } | Action::OpenPassive { .. } | Action::Transfer { .. } => None,
    }
}

/// The answer to a metadata action when no root is open (an io layer bug: the session only
/// asks after login). Every such action fails cleanly instead of touching the disk.
pub fn without_root(action: &Action) -> OpResult {
    let denied = FsError::PermissionDenied;
    match action {
        Action::Stat { .. } => OpResult::Stat(Err(denied)),
        Action::ReadDir { .. } => OpResult::Entries { entries: Err(denied), now_unix: now_unix() },
        _ => OpResult::Done(Err(denied)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let all = read_dir(&root, &VirtualPath::root(), true, None).unwrap();
        assert_eq!(all.len(), 2);
        let shown = read_dir(&root, &VirtualPath::root(), false, None).unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!((shown[0].kind, shown[0].size), (FileKind::File, 5));
        let a = VirtualPath::root().join(b"a").unwrap();
        match run(&root, &Action::Stat { path: a }) {
            Some(OpResult::Stat(Ok(m))) => assert_eq!((m.name, m.size), (b"a".to_vec(), 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_glob_keeps_matching_names_with_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.bin", "b.txt", ".c.bin", "d.bin"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let glob = |p: &[u8]| NameFilter { pattern: p.to_vec(), prefix: b"dir/".to_vec() };
        let names = |hidden, g: &NameFilter| -> Vec<Vec<u8>> {
            read_dir(&root, &VirtualPath::root(), hidden, Some(g))
                .unwrap()
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(names(false, &glob(b"*.bin")), [&b"dir/a.bin"[..], b"dir/d.bin"]);
        assert_eq!(names(true, &glob(b"*.bin")), [&b"dir/.c.bin"[..], b"dir/a.bin", b"dir/d.bin"]);
        assert_eq!(names(false, &glob(b".*")), [&b"dir/.c.bin"[..]]);
        assert!(names(false, &glob(b"zz*")).is_empty(), "no match is an empty listing");
        let text =
            listing(&root, &VirtualPath::root(), ListFormat::Names, false, Some(&glob(b"[ab]*"))).unwrap();
        assert_eq!(text, b"dir/a.bin\r\ndir/b.txt\r\n");
    }
}
