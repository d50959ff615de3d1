//! The worker side of the binder: ask for a socket bound to `<our address>:20` and receive
//! it as SCM_RIGHTS. Requests are rare (active-mode data only), so a blocking round trip
//! with a short timeout is simpler than an async one and costs microseconds.

use super::proto::{BindRequest, BindResponse, RESPONSE_LEN};
use nix::sys::socket::{recvmsg, send, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeVal;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Why the binder did not hand out a socket.
#[derive(Debug, thiserror::Error)]
pub enum BinderError {
    /// The policy refused the request.
    #[error("the binder refused to bind {0}")]
    Refused(SocketAddr),
    /// The binder tried and the kernel said no.
    #[error("the binder could not bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The channel broke or the answer was malformed.
    #[error("binder channel: {0}")]
    Channel(String),
}

/// One worker's channel to the binder.
#[derive(Debug)]
pub struct BinderClient {
    channel: OwnedFd,
}

impl BinderClient {
    /// Wraps a connected SOCK_SEQPACKET channel.
    pub fn new(channel: OwnedFd) -> BinderClient {
        // A binder that hangs must not hang a worker forever.
        let _ = setsockopt(&channel, sockopt::ReceiveTimeout, &TimeVal::new(2, 0));
        BinderClient { channel }
    }

    /// Waits for the binder's one-time ready message (sent after its privilege drop).
    pub fn wait_ready(&self) -> Result<(), BinderError> {
        let mut buf = [0u8; RESPONSE_LEN];
        let n = nix::sys::socket::recv(self.channel.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| BinderError::Channel(format!("waiting for the binder to start: {e}")))?;
        match BindResponse::decode(&buf[..n]) {
            Some(BindResponse::Ready) => Ok(()),
            _ if n == 0 => Err(BinderError::Channel("the binder exited during start-up".into())),
            _ => Err(BinderError::Channel("unexpected first message from the binder".into())),
        }
    }

    /// Asks for a TCP socket bound to `addr`.
    pub fn bind(&self, addr: SocketAddr) -> Result<OwnedFd, BinderError> {
        let fd = self.channel.as_raw_fd();
        send(fd, &BindRequest { addr }.encode(), MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| BinderError::Channel(format!("send: {e}")))?;
        let mut buf = [0u8; RESPONSE_LEN];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| BinderError::Channel(format!("receive: {e}")))?;
        let mut received: Option<OwnedFd> = None;
        for c in msg.cmsgs().map_err(|e| BinderError::Channel(format!("control message: {e}")))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    received.get_or_insert(owned);
                }
            }
        }
        let n = msg.bytes;
        match BindResponse::decode(&buf[..n]) {
            Some(BindResponse::Granted) => {
                received.ok_or_else(|| BinderError::Channel("granted without a socket".into()))
            }
            Some(BindResponse::Refused) => Err(BinderError::Refused(addr)),
            Some(BindResponse::Ready) => Err(BinderError::Channel("unexpected ready message".into())),
            Some(BindResponse::Failed(errno)) => {
                Err(BinderError::Bind { addr, source: std::io::Error::from_raw_os_error(errno) })
            }
            None => Err(BinderError::Channel("malformed response".into())),
        }
    }
}

impl BinderClient {
    /// The raw channel fd, for tests that speak the wire protocol directly.
    pub fn raw_channel(&self) -> std::os::fd::RawFd {
        self.channel.as_raw_fd()
    }
}
