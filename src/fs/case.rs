//! Case-insensitive lookup under a root, for TFTP clients (Windows, DOS-era menus) that ask
//! `BOOT\BCD` for `boot/bcd`: used only after the exact name was not found, bounded per directory.

use super::{error::kind_error, temp, FileErrorKind, Root};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

impl Root {
    /// The existing path that matches `rel` component by component, each exactly when it
    /// exists, else ignoring ASCII case (the first such name in byte order). A directory is
    /// searched through at most `max_entries` entries; beyond that the component counts as
    /// not found, so a huge directory cannot stall a lookup.
    pub fn find_ignoring_case(&self, rel: &Path, max_entries: usize) -> io::Result<PathBuf> {
        let mut found = PathBuf::new();
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(kind_error(FileErrorKind::InvalidName));
            };
            let exact = found.join(name);
            match self.open_at(&exact, OFlag::O_PATH, Mode::empty()) {
                Ok(_) => {
                    found = exact;
                    continue;
                }
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                Err(_) => {}
            }
            let dir = self.open_at(&found, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
            let mut stream = nix::dir::Dir::from(dir).map_err(io::Error::from)?;
            let mut best: Option<Vec<u8>> = None;
            for entry in stream.iter().take(max_entries) {
                let entry = entry.map_err(io::Error::from)?;
                let candidate = entry.file_name().to_bytes();
                if candidate.eq_ignore_ascii_case(name.as_bytes())
                    && !temp::is_upload_temp(candidate)
                    && best.as_deref().is_none_or(|b| candidate < b)
                {
                    best = Some(candidate.to_vec());
                }
            }
            let Some(actual) = best else { return Err(io::Error::from_raw_os_error(libc::ENOENT)) };
            found.push(OsStr::from_bytes(&actual));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_component_ignoring_case_and_stays_inside() {
        let outer = tempfile::tempdir().unwrap();
        let served = outer.path().join("served");
        std::fs::create_dir_all(served.join("Boot/x64")).unwrap();
        std::fs::write(served.join("Boot/x64/wdsnbp.com"), "nbp").unwrap();
        std::fs::write(served.join("Boot/BCD"), "bcd").unwrap();
        std::fs::write(outer.path().join("SECRET"), "outside").unwrap();
        std::os::unix::fs::symlink("../SECRET", served.join("link")).unwrap();
        let root = Root::open(&served).unwrap();
        let find = |p: &str| root.find_ignoring_case(Path::new(p), 100).map(|p| p.display().to_string());
        assert_eq!(find("boot/X64/WDSNBP.COM").unwrap(), "Boot/x64/wdsnbp.com");
        assert_eq!(find("BOOT/bcd").unwrap(), "Boot/BCD");
        assert_eq!(find("Boot/BCD").unwrap(), "Boot/BCD", "exact names need no search");
        assert_eq!(find("boot/missing").unwrap_err().raw_os_error(), Some(libc::ENOENT));
        assert!(find("../secret").is_err(), "`..` is no name to match");
        // The match is only a name: opening it still goes through the root's confinement.
        let link = find("LINK").unwrap();
        assert!(root.open_read(Path::new(&link)).is_err());
        // Past the bound, a directory is not searched.
        assert!(root.find_ignoring_case(Path::new("boot"), 0).is_err());
    }
}
