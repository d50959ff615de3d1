//! What went wrong with a file, in words both protocols understand: `fs::classify` turns an
//! errno into a [`FileErrorKind`] once, and each protocol core maps the kind to its answer.
#![forbid(unsafe_code)]

/// Why a file operation failed, whatever the protocol. A pure value: the protocol cores
/// import it, the io layer makes it (from errno, through `fs::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FileErrorKind {
    /// ENOENT.
    #[error("not found")]
    NotFound,
    /// ENOTDIR: a path component (or a directory operation's target) is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// EISDIR.
    #[error("is a directory")]
    IsADirectory,
    /// A device, FIFO or socket where a regular file is needed.
    #[error("not a regular file")]
    NotRegular,
    /// ENOTEMPTY.
    #[error("directory not empty")]
    NotEmpty,
    /// EEXIST.
    #[error("already exists")]
    Exists,
    /// ENAMETOOLONG.
    #[error("file name too long")]
    NameTooLong,
    /// EINVAL or EILSEQ on a name (no last component, not valid for the file system).
    #[error("invalid file name")]
    InvalidName,
    /// EACCES, EPERM, EROFS, ETXTBSY, and openat2's refusals to leave the root or follow a
    /// magic link (EXDEV, ELOOP): an escape attempt is refused like any forbidden access.
    #[error("permission denied")]
    PermissionDenied,
    /// ENOSPC: the file system is full.
    #[error("no space left on device")]
    NoSpace,
    /// EDQUOT: the owner's allocation is used up.
    #[error("disk quota exceeded")]
    QuotaExceeded,
    /// EFBIG: the file would exceed the largest size allowed.
    #[error("file too large")]
    TooLarge,
    /// A start offset past the end of the file.
    #[error("offset beyond the end of the file")]
    OffsetBeyondEnd,
    /// EMFILE, ENFILE, ENOMEM, or a server memory budget: the file may be fine, retry later.
    #[error("server busy")]
    Busy,
    /// Anything else (EIO, ...).
    #[error("local error")]
    Other,
}

impl FileErrorKind {
    /// Every kind, for tables that must cover them all.
    pub const ALL: [FileErrorKind; 15] = [
        FileErrorKind::NotFound,
        FileErrorKind::NotADirectory,
        FileErrorKind::IsADirectory,
        FileErrorKind::NotRegular,
        FileErrorKind::NotEmpty,
        FileErrorKind::Exists,
        FileErrorKind::NameTooLong,
        FileErrorKind::InvalidName,
        FileErrorKind::PermissionDenied,
        FileErrorKind::NoSpace,
        FileErrorKind::QuotaExceeded,
        FileErrorKind::TooLarge,
        FileErrorKind::OffsetBeyondEnd,
        FileErrorKind::Busy,
        FileErrorKind::Other,
    ];

    /// Out of room (space, quota or size limit): the failures a write can meet midway,
    /// which the protocols answer with their own codes rather than a generic local error.
    pub const fn is_out_of_room(self) -> bool {
        matches!(self, FileErrorKind::NoSpace | FileErrorKind::QuotaExceeded | FileErrorKind::TooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::FileErrorKind::{self, *};

    #[test]
    fn all_lists_every_kind_once_in_order() {
        // Exhaustive on purpose: a new kind does not compile here until ALL has it.
        let position = |k: FileErrorKind| match k {
            NotFound => 0,
            NotADirectory => 1,
            IsADirectory => 2,
            NotRegular => 3,
            NotEmpty => 4,
            Exists => 5,
            NameTooLong => 6,
            InvalidName => 7,
            PermissionDenied => 8,
            NoSpace => 9,
            QuotaExceeded => 10,
            TooLarge => 11,
            OffsetBeyondEnd => 12,
            Busy => 13,
            Other => 14,
        };
        for (i, k) in FileErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(position(k), i, "{k:?}");
        }
    }
}
