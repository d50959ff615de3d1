//! The session's logical view of the file tree: absolute virtual paths under the user's root,
//! joined and normalised so that no path climbs above `/`. The kernel (openat2 with
//! RESOLVE_IN_ROOT in the io layer) is the real confinement; this is what replies show.

use std::fmt;

/// Longest virtual path accepted (Linux PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;

/// Why an argument cannot be made into a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The argument holds a NUL byte, which no Linux name can contain.
    #[error("path contains a NUL byte")]
    Nul,
    /// The normalised path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
}

/// An absolute, normalised path inside the user's root: starts with `/`, has no empty,
/// `.` or `..` components and no trailing `/` (except the root itself).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(Vec<u8>);

impl VirtualPath {
    /// The user's root, `/`.
    pub fn root() -> VirtualPath {
        VirtualPath(b"/".to_vec())
    }

    /// Resolves a client argument against `self` (the working directory): absolute arguments
    /// start again at `/`; `..` at the root stays at the root, as in a chroot.
    pub fn join(&self, arg: &[u8]) -> Result<VirtualPath, PathError> {
        if arg.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut parts: Vec<&[u8]> =
            if arg.first() == Some(&b'/') { Vec::new() } else { self.components().collect() };
        for comp in arg.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let mut out = Vec::with_capacity(arg.len() + self.0.len() + 1);
        for p in &parts {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        if out.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        Ok(VirtualPath(out))
    }

    /// The path's components, root first (none for `/`).
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The absolute form shown to the client, e.g. `/pub/file`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The form the io layer opens relative to the user's root directory fd with
    /// openat2(RESOLVE_IN_ROOT): `pub/file`, or `.` for the root.
    pub fn relative(&self) -> &[u8] {
        if self.is_root() {
            b"."
        } else {
            &self.0[1..]
        }
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The containing directory (`/` for `/`).
    pub fn parent(&self) -> VirtualPath {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(0) | None => VirtualPath::root(),
            Some(i) => VirtualPath(self.0[..i].to_vec()),
        }
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.components().last()
    }
}

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> VirtualPath {
        VirtualPath::root().join(s.as_bytes()).unwrap()
    }

    #[test]
    fn joins_and_normalises() {
        let cwd = p("/pub/docs");
        assert_eq!(cwd.join(b"a/b").unwrap().as_bytes(), b"/pub/docs/a/b");
        assert_eq!(cwd.join(b"../x").unwrap().as_bytes(), b"/pub/x");
        assert_eq!(cwd.join(b"/etc//passwd/.").unwrap().as_bytes(), b"/etc/passwd");
        assert_eq!(cwd.join(b"../../../../..").unwrap().as_bytes(), b"/");
        assert_eq!(cwd.join(b"").unwrap(), cwd);
        assert_eq!(cwd.join(b"...").unwrap().as_bytes(), b"/pub/docs/...");
    }

    #[test]
    fn relative_form_for_openat2() {
        assert_eq!(VirtualPath::root().relative(), b".");
        assert_eq!(p("/a/b").relative(), b"a/b");
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(p("/a/b").parent(), p("/a"));
        assert_eq!(p("/a").parent(), VirtualPath::root());
        assert_eq!(VirtualPath::root().parent(), VirtualPath::root());
        assert_eq!(p("/a/b").file_name(), Some(&b"b"[..]));
        assert_eq!(VirtualPath::root().file_name(), None);
    }

    #[test]
    fn errors() {
        assert_eq!(VirtualPath::root().join(b"a\0b"), Err(PathError::Nul));
        assert_eq!(VirtualPath::root().join(&[b'a'; 5000]), Err(PathError::TooLong));
    }

    #[test]
    fn non_utf8_names_survive() {
        assert_eq!(VirtualPath::root().join(b"\xff\xfe").unwrap().as_bytes(), b"/\xff\xfe");
    }

    fn assert_normal(v: &VirtualPath) {
        let b = v.as_bytes();
        assert_eq!(b.first(), Some(&b'/'));
        assert!(b.len() == 1 || b.last() != Some(&b'/'));
        for c in b[1..].split(|&x| x == b'/') {
            assert!(b.len() == 1 || !c.is_empty(), "empty component in {v:?}");
            assert!(c != b"." && c != b"..", "dot component in {v:?}");
        }
        assert!(!v.relative().starts_with(b"/"));
    }

    proptest! {
        #[test]
        fn never_escapes(cwd in proptest::collection::vec(any::<u8>(), 0..64),
                         arg in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(base) = VirtualPath::root().join(&cwd) {
                assert_normal(&base);
                if let Ok(j) = base.join(&arg) {
                    assert_normal(&j);
                    // Joining again is a no-op: normalisation is idempotent.
                    prop_assert_eq!(VirtualPath::root().join(j.as_bytes()).unwrap(), j);
                }
            }
        }

        #[test]
        fn dot_heavy_paths_never_escape(parts in proptest::collection::vec(
            prop_oneof![Just(".."), Just("."), Just(""), Just("a"), Just("..."), Just("b/..")], 0..20)) {
            let arg = parts.join("/");
            let j = p("/x/y").join(arg.as_bytes()).unwrap();
            assert_normal(&j);
        }
    }
}
