//! FTP control connections: the accept loop and, per connection, the session task.
//! Until the FTP protocol core is wired in, a session greets and answers 502.

use super::worker::WorkerContext;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio_uring::net::{TcpListener, TcpStream};
use tracing::{debug, info_span, warn, Instrument};

/// Accepts control connections until the listener is shut down.
pub async fn accept_loop(ctx: Rc<WorkerContext>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let span = info_span!("ftp", client = %peer, worker = ctx.id);
                tokio_uring::spawn(session(Rc::clone(&ctx), stream, peer).instrument(span));
            }
            Err(_) if ctx.shutting_down() => break,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on the error.
                warn!(worker = ctx.id, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    debug!(worker = ctx.id, "FTP listener closed");
}

async fn session(ctx: Rc<WorkerContext>, stream: TcpStream, _peer: SocketAddr) {
    let _active = ctx.activity();
    debug!("control connection open");
    let (res, _) = stream.write_all(b"220 Ferry FTP server ready.\r\n".to_vec()).await;
    if res.is_err() {
        return;
    }
    let mut line = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buf[..n] {
            if byte != b'\n' {
                if line.len() < 4096 {
                    line.push(byte);
                }
                continue;
            }
            let quit = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"QUIT");
            let reply: &[u8] = if quit { b"221 Goodbye.\r\n" } else { b"502 Command not implemented.\r\n" };
            line.clear();
            if stream.write_all(reply.to_vec()).await.0.is_err() || quit {
                return;
            }
        }
    }
}
