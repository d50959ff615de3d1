//! Who is logged in and what they may do: the permission set checked before each file
//! operation and the root the io layer confines them to. Anonymous users are read-only
//! unless the operator makes them writable (then they may upload and mkdir, never delete).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// One thing a user may be allowed to do (the names used in `permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// List directories and retrieve files.
    Read,
    /// Store new files and overwrite existing ones.
    Write,
    /// Append to files (APPE, resumed STOR).
    Append,
    /// Delete files and remove directories.
    Delete,
    /// Rename files and directories.
    Rename,
    /// Create directories.
    Mkdir,
}

impl Permission {
    /// Every permission, in the order they are documented.
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Write,
        Permission::Append,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
    ];

    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Append => "append",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
        }
    }

    /// Parses a configuration name (exact, lowercase).
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Anonymous login names (RFC 1635), compared case-insensitively.
pub const ANONYMOUS_NAMES: [&str; 2] = ["anonymous", "ftp"];

/// A set of [`Permission`]s.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// No permission at all.
    pub const NONE: Permissions = Permissions(0);

    /// Every permission.
    pub fn all() -> Permissions {
        Permission::ALL.into_iter().collect()
    }

    /// True when `p` is granted.
    pub fn allows(self, p: Permission) -> bool {
        self.0 & bit(p) != 0
    }

    /// This set with `p` added.
    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | bit(p))
    }
}

fn bit(p: Permission) -> u8 {
    1 << (p as u8)
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Permission::ALL.into_iter().filter(|p| self.allows(*p)).map(|p| p.name()))
            .finish()
    }
}

/// A logged-in identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name (`anonymous` for both anonymous names).
    pub name: Arc<str>,
    /// Directory the io layer opens paths under (openat2 RESOLVE_IN_ROOT).
    pub root: PathBuf,
    /// What this user may do.
    pub permissions: Permissions,
    /// Logged in as `anonymous`/`ftp`.
    pub anonymous: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let p: Permissions = [Permission::Read, Permission::Mkdir].into_iter().collect();
        assert!(p.allows(Permission::Read) && p.allows(Permission::Mkdir));
        assert!(!p.allows(Permission::Delete));
        assert!(Permission::ALL.iter().all(|x| Permissions::all().allows(*x)));
        assert_eq!(format!("{p:?}"), r#"{"read", "mkdir"}"#);
    }
}
