//! Kernel TLS on a TCP socket (Documentation/networking/tls.rst): attaching the `tls` ULP,
//! handing it one direction's keys, non-data records through control messages, and the probe.
//!
//! The probe runs once at start, before the privilege drop (the kernel loads the `tls` module
//! on demand only for CAP_NET_ADMIN), on loopback TCP pairs: one pair per version and cipher,
//! since a socket takes each direction's keys once.

use crate::tls::kernel::{DirectionKeys, KernelCipher, KernelSuite, KernelVersion};
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// Which direction's keys the kernel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// TLS_TX: the kernel encrypts what is sent (send, sendfile, splice).
    Tx,
    /// TLS_RX: the kernel decrypts what arrives (recv, splice).
    Rx,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches the `tls` ULP to a connected TCP socket. Until keys are set the socket still
/// carries plain TCP, so a failure later leaves user-space TLS possible.
pub fn attach(fd: RawFd) -> io::Result<()> {
    const NAME: &[u8] = b"tls";
    // SAFETY: the option value is the 3-byte name, valid for the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            NAME.as_ptr().cast(),
            NAME.len() as libc::socklen_t,
        )
    })
}

fn array<const N: usize>(bytes: &[u8]) -> io::Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "kernel TLS key material of the wrong size"))
}

fn set_option<T>(fd: RawFd, way: Way, value: &T) -> io::Result<()> {
    let name = match way {
        Way::Tx => libc::TLS_TX,
        Way::Rx => libc::TLS_RX,
    };
    // SAFETY: `value` is a plain `tls12_crypto_info_*` structure of `size_of::<T>()` bytes,
    // borrowed for the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TLS,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
}

/// Hands the kernel one direction's keys (after [`attach`]); from then on that direction's
/// records are the kernel's.
pub fn set_keys(fd: RawFd, way: Way, keys: &DirectionKeys) -> io::Result<()> {
    let version = match keys.suite.version {
        KernelVersion::Tls12 => libc::TLS_1_2_VERSION,
        KernelVersion::Tls13 => libc::TLS_1_3_VERSION,
    };
    // The three structures differ only in their array sizes.
    macro_rules! crypto_info {
        ($info:ident, $cipher:ident) => {
            set_option(
                fd,
                way,
                &libc::$info {
                    info: libc::tls_crypto_info { version, cipher_type: libc::$cipher },
                    iv: array(&keys.iv)?,
                    key: array(&keys.key)?,
                    salt: array(&keys.salt)?,
                    rec_seq: keys.rec_seq,
                },
            )
        };
    }
    match keys.suite.cipher {
        KernelCipher::Aes128Gcm => crypto_info!(tls12_crypto_info_aes_gcm_128, TLS_CIPHER_AES_GCM_128),
        KernelCipher::Aes256Gcm => crypto_info!(tls12_crypto_info_aes_gcm_256, TLS_CIPHER_AES_GCM_256),
        KernelCipher::Chacha20Poly1305 => {
            crypto_info!(tls12_crypto_info_chacha20_poly1305, TLS_CIPHER_CHACHA20_POLY1305)
        }
    }
}

/// Room for one control message carrying a one-byte record type, 8-byte aligned.
type CmsgBuf = [u64; 8];

/// Sends `payload` as one record of `content_type` (an alert, 21) through the kernel's TX
/// keys, without blocking (EAGAIN when the socket buffer is full: wait for POLLOUT).
pub fn send_record(fd: RawFd, content_type: u8, payload: &[u8]) -> io::Result<usize> {
    let mut cbuf: CmsgBuf = [0; 8];
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as usize;
    // SAFETY: the control buffer is 64 bytes, aligned for cmsghdr, and holds CMSG_SPACE(1)
    // (24) bytes, so the first header and its one data byte are inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(cmsg) = content_type;
    }
    // SAFETY: msg points at the iovec (over `payload`) and the control buffer, all alive for
    // the call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receives one record's plaintext into `buf` with its content type (application data, 23,
/// when the kernel names none), without blocking. Reads what a splice refused: the kernel
/// keeps a non-data record at the head of the stream until a receive with room for the
/// control message takes it.
pub fn recv_record(fd: RawFd, buf: &mut [u8]) -> io::Result<(u8, usize)> {
    let mut cbuf: CmsgBuf = [0; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<CmsgBuf>();
    // SAFETY: msg points at the iovec (over `buf`) and the control buffer, both alive and
    // writable for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut content_type = 23;
    // SAFETY: the kernel set msg_controllen to what it wrote into cbuf; CMSG_FIRSTHDR returns
    // null when no header fits, and a header it returns lies inside cbuf with its data.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_TLS
            && (*cmsg).cmsg_type == libc::TLS_GET_RECORD_TYPE
            && (*cmsg).cmsg_len >= libc::CMSG_LEN(1) as usize
        {
            content_type = *libc::CMSG_DATA(cmsg);
        }
    }
    Ok((content_type, n as usize))
}

/// What the start-up probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The `tls` ULP works; these suites took both directions' keys (maybe not all).
    Offloads {
        /// Suites the kernel took.
        suites: Vec<KernelSuite>,
        /// Why the others were refused, for the log.
        refused: Vec<(KernelSuite, String)>,
    },
    /// No kernel TLS here, and why.
    Unavailable(String),
}

/// Tries the `tls` ULP and every suite Ferry negotiates on loopback TCP pairs.
pub fn probe() -> Probe {
    let mut suites = Vec::new();
    let mut refused = Vec::new();
    for suite in KernelSuite::ALL {
        let (_client, server) = match loopback_pair() {
            Ok(pair) => pair,
            Err(e) => return Probe::Unavailable(format!("cannot open a loopback TCP pair to probe it: {e}")),
        };
        let fd = server.as_raw_fd();
        if let Err(e) = attach(fd) {
            return Probe::Unavailable(ulp_refused(&e));
        }
        let keys = DirectionKeys {
            suite,
            key: vec![0; if suite.cipher == KernelCipher::Aes128Gcm { 16 } else { 32 }],
            salt: vec![0; if suite.cipher == KernelCipher::Chacha20Poly1305 { 0 } else { 4 }],
            iv: vec![0; if suite.cipher == KernelCipher::Chacha20Poly1305 { 12 } else { 8 }],
            rec_seq: [0; 8],
        };
        match set_keys(fd, Way::Tx, &keys).and_then(|()| set_keys(fd, Way::Rx, &keys)) {
            Ok(()) => suites.push(suite),
            Err(e) => refused.push((suite, cipher_refused(&e))),
        }
    }
    if suites.is_empty() {
        let why = refused.first().map_or_else(String::new, |(_, why)| why.clone());
        return Probe::Unavailable(format!("the `tls` ULP attaches but takes no cipher Ferry offers: {why}"));
    }
    Probe::Offloads { suites, refused }
}

fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

/// Why TCP_ULP "tls" failed, in an operator's words.
fn ulp_refused(e: &io::Error) -> String {
    if e.raw_os_error() != Some(libc::ENOENT) {
        return format!("the kernel refused the `tls` ULP: {e}");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let module = ["", ".xz", ".zst", ".gz"].iter().any(|ext| {
        std::path::Path::new(&format!("/lib/modules/{release}/kernel/net/tls/tls.ko{ext}")).exists()
    });
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).unwrap_or_default();
    if module || config.lines().any(|l| l == "CONFIG_TLS=m") {
        "the `tls` module is not loaded (`modprobe tls`, or start Ferry as root or with \
         CAP_NET_ADMIN, which loads it on demand)"
            .into()
    } else if config.lines().any(|l| l == "CONFIG_TLS=y") {
        "the kernel has CONFIG_TLS but refused the `tls` ULP".into()
    } else {
        format!("the kernel ({release}) has no `tls` ULP: built without CONFIG_TLS, or its module is not installed")
    }
}

/// Why a cipher's keys were refused.
fn cipher_refused(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!("cipher not offloadable: the kernel crypto API lacks it ({e})"),
        Some(libc::EINVAL) => format!("cipher not offloadable: this kernel's `tls` does not know it ({e})"),
        _ => format!("cipher not offloadable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_gives_a_reason_or_the_suites() {
        match probe() {
            Probe::Unavailable(why) => assert!(!why.is_empty()),
            Probe::Offloads { suites, .. } => assert!(!suites.is_empty()),
        }
    }

    #[test]
    fn without_the_module_the_reason_names_it() {
        let why = ulp_refused(&io::Error::from_raw_os_error(libc::ENOENT));
        assert!(why.contains("tls"), "{why}");
        let other = ulp_refused(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(other.contains("refused"), "{other}");
    }
}
