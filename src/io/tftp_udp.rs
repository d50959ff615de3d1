//! TFTP request sockets: the receive loop on each worker's UDP 69 member.
//! Until the TFTP protocol core is wired in, every request is answered with ERROR 0.

use super::worker::WorkerContext;
use std::rc::Rc;
use tokio_uring::net::UdpSocket;
use tracing::debug;

/// Receives requests until the socket is shut down.
pub async fn request_loop(ctx: Rc<WorkerContext>, socket: UdpSocket) {
    let mut buf = vec![0u8; 2048];
    loop {
        // tokio-uring's recv_from panics when shutdown(2) wakes it (no source address), so
        // shutdown is observed through the watch channel; the dropped op ends at exit.
        let (res, b) = tokio::select! {
            r = socket.recv_from(buf) => r,
            _ = ctx.wait_shutdown() => break,
        };
        buf = b;
        match res {
            Ok((_, peer)) => {
                let mut err = vec![0, 5, 0, 0];
                err.extend_from_slice(b"TFTP service not available yet\0");
                let _ = socket.send_to(err, peer).await;
            }
            Err(e) => debug!(worker = ctx.id, "recv failed: {e}"),
        }
    }
    debug!(worker = ctx.id, "TFTP socket closed");
}
