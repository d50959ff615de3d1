//! Privilege inspection and dropping: who we started as, and the one-way steps down to the
//! service user with no capabilities (server) or only CAP_NET_BIND_SERVICE (binder).

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};
use tracing::{info, warn};

/// What the process could do when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPrivilege {
    /// Running as root: may bind anything and must drop to the service user.
    Root,
    /// Non-root but holding CAP_NET_BIND_SERVICE (a container or systemd ambient capability).
    BindCapability,
    /// Neither: only ports >= 1024 (unless the kernel's unprivileged port floor is lower).
    Unprivileged,
}

impl StartPrivilege {
    /// Reads the current process's credentials and capabilities.
    pub fn detect() -> StartPrivilege {
        if Uid::effective().is_root() {
            StartPrivilege::Root
        } else if caps::has_cap(None, CapSet::Effective, Capability::CAP_NET_BIND_SERVICE).unwrap_or(false)
            || caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_BIND_SERVICE).unwrap_or(false)
        {
            StartPrivilege::BindCapability
        } else {
            StartPrivilege::Unprivileged
        }
    }

    /// True when the process can bind ports below 1024, so a binder is worth starting.
    pub fn can_bind_low_ports(self) -> bool {
        !matches!(self, StartPrivilege::Unprivileged)
    }
}

/// Failures while dropping privileges. Any of them stops the server: running half-dropped is
/// worse than not running.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// Neither the configured user nor `nobody` exists.
    #[error("service user `{0}` does not exist, and neither does `nobody`")]
    NoUser(String),
    /// A credential syscall failed.
    #[error("{step}: {source}")]
    Syscall { step: &'static str, source: nix::Error },
    /// A capability call failed.
    #[error("{step}: {source}")]
    Caps { step: &'static str, source: caps::errors::CapsError },
    /// After dropping, the process still holds something it should not.
    #[error("privilege drop did not take: {0}")]
    Verify(String),
}

/// The unprivileged identity both processes run as after the drop.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    /// User name actually used (may be `nobody` after a fallback).
    pub name: String,
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid.
    pub gid: Gid,
}

impl ServiceUser {
    /// Looks `name` up, falling back to `nobody` with a warning when it does not exist.
    pub fn lookup(name: &str) -> Result<ServiceUser, PrivError> {
        let found = |n: &str| User::from_name(n).ok().flatten();
        if let Some(u) = found(name) {
            return Ok(ServiceUser { name: u.name, uid: u.uid, gid: u.gid });
        }
        match found("nobody") {
            Some(u) => {
                warn!(user = name, "service user does not exist; falling back to `nobody`");
                Ok(ServiceUser { name: u.name, uid: u.uid, gid: u.gid })
            }
            None => Err(PrivError::NoUser(name.to_string())),
        }
    }

    /// The identity of the current process (used when not started as root).
    pub fn current() -> ServiceUser {
        let uid = Uid::current();
        let name = User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string());
        ServiceUser { name, uid, gid: Gid::current() }
    }
}

fn sys<T>(step: &'static str, r: nix::Result<T>) -> Result<T, PrivError> {
    r.map_err(|source| PrivError::Syscall { step, source })
}

fn capcall<T>(step: &'static str, r: Result<T, caps::errors::CapsError>) -> Result<T, PrivError> {
    r.map_err(|source| PrivError::Caps { step, source })
}

/// Switches uid/gid to `user` (root start only). With `keep_caps`, the permitted set
/// survives the uid change so one capability can be kept afterwards.
fn become_user(user: &ServiceUser, keep_caps: bool) -> Result<(), PrivError> {
    // The bounding set can only be reduced while CAP_SETPCAP is held, i.e. before setuid.
    let keep: CapsHashSet =
        if keep_caps { [Capability::CAP_NET_BIND_SERVICE].into() } else { CapsHashSet::new() };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            // Capabilities unknown to the running kernel fail here; they are not held anyway.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    sys("setgroups", nix::unistd::setgroups(&[]))?;
    sys("setresgid", nix::unistd::setresgid(user.gid, user.gid, user.gid))?;
    if keep_caps {
        sys("prctl(PR_SET_KEEPCAPS)", nix::sys::prctl::set_keepcaps(true))?;
    }
    sys("setresuid", nix::unistd::setresuid(user.uid, user.uid, user.uid))?;
    if keep_caps {
        sys("prctl(PR_SET_KEEPCAPS)", nix::sys::prctl::set_keepcaps(false))?;
    }
    Ok(())
}

/// Leaves exactly `keep` in the permitted and effective sets, nothing inheritable or
/// ambient, and sets PR_SET_NO_NEW_PRIVS so no exec can regain anything.
fn restrict_caps(keep: &CapsHashSet) -> Result<(), PrivError> {
    capcall("clear ambient capabilities", caps::clear(None, CapSet::Ambient))?;
    capcall("clear inheritable capabilities", caps::clear(None, CapSet::Inheritable))?;
    capcall("set effective capabilities", caps::set(None, CapSet::Effective, keep))?;
    capcall("set permitted capabilities", caps::set(None, CapSet::Permitted, keep))?;
    sys("prctl(PR_SET_NO_NEW_PRIVS)", nix::sys::prctl::set_no_new_privs())?;
    Ok(())
}

/// Checks the drop took: ids are the service user's and the capability sets are `keep`.
fn verify(user: Option<&ServiceUser>, keep: &CapsHashSet) -> Result<(), PrivError> {
    if let Some(user) = user {
        let r = sys("getresuid", nix::unistd::getresuid())?;
        let g = sys("getresgid", nix::unistd::getresgid())?;
        if [r.real, r.effective, r.saved].iter().any(|u| *u != user.uid)
            || [g.real, g.effective, g.saved].iter().any(|x| *x != user.gid)
        {
            return Err(PrivError::Verify(format!("ids are {r:?} {g:?}, wanted {}:{}", user.uid, user.gid)));
        }
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient] {
        let held = capcall("read capabilities", caps::read(None, set))?;
        let wanted = if matches!(set, CapSet::Effective | CapSet::Permitted) {
            keep.clone()
        } else {
            CapsHashSet::new()
        };
        if held != wanted {
            return Err(PrivError::Verify(format!("{set:?} capabilities are {held:?}, wanted {wanted:?}")));
        }
    }
    Ok(())
}

/// Drops the serving process to `user` with no capabilities at all.
///
/// Must run while the process is single-threaded: capabilities are per thread.
pub fn drop_server(start: StartPrivilege, user: &ServiceUser) -> Result<(), PrivError> {
    drop_to(start, user, CapsHashSet::new())?;
    info!(user = %user.name, uid = %user.uid, gid = %user.gid, "privileges dropped: no capabilities left");
    Ok(())
}

/// Drops the binder process to `user`, keeping only CAP_NET_BIND_SERVICE.
pub fn drop_binder(start: StartPrivilege, user: &ServiceUser) -> Result<(), PrivError> {
    drop_to(start, user, [Capability::CAP_NET_BIND_SERVICE].into())
}

/// Switches to `user` (root start only) and leaves exactly `keep`, then verifies.
fn drop_to(start: StartPrivilege, user: &ServiceUser, keep: CapsHashSet) -> Result<(), PrivError> {
    let switched = if start == StartPrivilege::Root {
        become_user(user, !keep.is_empty())?;
        Some(user)
    } else {
        None
    };
    restrict_caps(&keep)?;
    verify(switched, &keep)
}

/// Makes CAP_NET_BIND_SERVICE survive an exec for a non-root start, by raising it into
/// the inheritable and ambient sets (the binder is started by fork + exec of ourselves).
pub fn pass_bind_cap_across_exec() -> Result<(), PrivError> {
    let cap = Capability::CAP_NET_BIND_SERVICE;
    capcall("raise inheritable CAP_NET_BIND_SERVICE", caps::raise(None, CapSet::Inheritable, cap))?;
    capcall("raise ambient CAP_NET_BIND_SERVICE", caps::raise(None, CapSet::Ambient, cap))?;
    Ok(())
}
