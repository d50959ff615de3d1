//! The one reading of a file operation's errno: [`classify`] gives the protocol-neutral
//! [`FileErrorKind`] that the FTP and TFTP cores each map to their own answer.

pub use crate::file_error::FileErrorKind;
use std::borrow::Borrow;
use std::io;

/// What `e`, from a file operation under a [`super::Root`], says went wrong.
///
/// An error this module made itself around a kind (see [`kind_error`]) gives that kind back;
/// that is how checks with no errno of their own (a FIFO where a file is needed) keep
/// their meaning instead of borrowing an errno that means something else elsewhere.
///
/// Takes the error or a reference to it, so that `.map_err(fs::classify)` works as well.
pub fn classify(e: impl Borrow<io::Error>) -> FileErrorKind {
    use FileErrorKind::*;
    let e = e.borrow();
    if let Some(kind) = e.get_ref().and_then(|inner| inner.downcast_ref::<FileErrorKind>()) {
        return *kind;
    }
    match e.raw_os_error() {
        Some(libc::ENOENT) => NotFound,
        Some(libc::ENOTDIR) => NotADirectory,
        Some(libc::EISDIR) => IsADirectory,
        Some(libc::ENOTEMPTY) => NotEmpty,
        Some(libc::EEXIST) => Exists,
        Some(libc::ENAMETOOLONG) => NameTooLong,
        Some(libc::EINVAL | libc::EILSEQ) => InvalidName,
        // EXDEV/ELOOP: openat2 (RESOLVE_IN_ROOT, NO_MAGICLINKS) refused to leave the root or
        // follow a magic link, or O_NOFOLLOW met a symlink: refused, not missing.
        Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY | libc::EXDEV | libc::ELOOP) => {
            PermissionDenied
        }
        Some(libc::ENOSPC) => NoSpace,
        Some(libc::EDQUOT) => QuotaExceeded,
        Some(libc::EFBIG) => TooLarge,
        // Out of descriptors or memory: the file may well be fine; the client should retry.
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => Busy,
        Some(_) => Other,
        None if e.kind() == io::ErrorKind::StorageFull => NoSpace,
        None => Other,
    }
}

/// An `io::Error` that [`classify`] reads back as `kind`.
pub(super) fn kind_error(kind: FileErrorKind) -> io::Error {
    io::Error::other(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_classify_once() {
        let of = |errno| classify(io::Error::from_raw_os_error(errno));
        let cases = [
            (libc::ENOENT, FileErrorKind::NotFound),
            (libc::ENOTDIR, FileErrorKind::NotADirectory),
            (libc::EISDIR, FileErrorKind::IsADirectory),
            (libc::ENOTEMPTY, FileErrorKind::NotEmpty),
            (libc::EEXIST, FileErrorKind::Exists),
            (libc::ENAMETOOLONG, FileErrorKind::NameTooLong),
            (libc::EINVAL, FileErrorKind::InvalidName),
            (libc::EACCES, FileErrorKind::PermissionDenied),
            (libc::EROFS, FileErrorKind::PermissionDenied),
            (libc::EXDEV, FileErrorKind::PermissionDenied),
            (libc::ELOOP, FileErrorKind::PermissionDenied),
            (libc::ENOSPC, FileErrorKind::NoSpace),
            (libc::EDQUOT, FileErrorKind::QuotaExceeded),
            (libc::EFBIG, FileErrorKind::TooLarge),
            (libc::EMFILE, FileErrorKind::Busy),
            (libc::ENFILE, FileErrorKind::Busy),
            (libc::EIO, FileErrorKind::Other),
        ];
        for (errno, kind) in cases {
            assert_eq!(of(errno), kind, "errno {errno}");
        }
        assert_eq!(classify(kind_error(FileErrorKind::NotRegular)), FileErrorKind::NotRegular);
        assert_eq!(classify(io::Error::from(io::ErrorKind::StorageFull)), FileErrorKind::NoSpace);
        assert_eq!(classify(io::Error::other("no errno")), FileErrorKind::Other);
    }
}
