//! Tests of the zero-copy paths over real sockets and pipes: sendfile and splice downloads
//! with offsets and lengths, stalls, aborts, rate limits, uploads and the pipe pool's budget.

use super::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, SharedFd) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    let fd: OwnedFd = std::fs::File::open(f.path()).unwrap().into();
    (f, shared(fd))
}

/// A connected pair: our non-blocking server side, and the std client side.
fn socket_pair() -> (SharedFd, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (shared(OwnedFd::from(server)), client)
}

/// Reads all the client side receives, on a thread: its bytes once the server side closes.
fn read_all(mut client: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    })
}

fn limits() -> TransferLimits {
    TransferLimits { stall_timeout: Duration::from_secs(5), rate_bps: 0 }
}

/// Sends `len` bytes from `offset` (to the end of `data` when `None`).
fn download(mode: ZeroCopy, data: &[u8], offset: u64, len: Option<u64>) -> (u64, Vec<u8>, usize) {
    let len = len.unwrap_or((data.len() as u64).saturating_sub(offset));
    let (_f, file) = file_with(data);
    let (sock, client) = socket_pair();
    let reader = read_all(client);
    let (sent, idle) = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 256 * 1024);
        let abort = AbortHandle::default();
        let conn = DataConn::new(&sock, &pipes, limits(), &abort);
        let sent = send_file(&conn, mode, &file, offset, len).await.unwrap();
        drop(sock);
        (sent, pipes.idle())
    });
    (sent, reader.join().unwrap(), idle)
}

#[test]
fn both_paths_send_whole_files_byte_exact() {
    let data = pattern(3 * 1024 * 1024 + 17);
    for mode in [ZeroCopy::Splice, ZeroCopy::Sendfile] {
        let (sent, got, _) = download(mode, &data, 0, None);
        assert_eq!(sent, data.len() as u64, "{mode:?}");
        assert!(got == data, "{mode:?}: bytes differ");
    }
}

#[test]
fn offsets_and_lengths_are_honoured() {
    let data = pattern(1024 * 1024);
    for mode in [ZeroCopy::Splice, ZeroCopy::Sendfile] {
        let (sent, got, _) = download(mode, &data, 1000, None);
        assert_eq!(sent as usize, data.len() - 1000);
        assert!(got == data[1000..]);
        let (sent, got, _) = download(mode, &data, 10, Some(5000));
        assert_eq!(sent, 5000);
        assert!(got == data[10..5010]);
        let (sent, got, _) = download(mode, &data, data.len() as u64, None);
        assert_eq!((sent, got.len()), (0, 0), "REST at the end sends nothing");
    }
}

#[test]
fn a_file_shorter_than_its_length_at_open_fails_and_a_longer_one_sends_that_length() {
    let data = pattern(200_000);
    for mode in [ZeroCopy::Splice, ZeroCopy::Sendfile] {
        let (_f, file) = file_with(&data);
        let (sock, client) = socket_pair();
        let reader = read_all(client);
        let (short, long) = tokio_uring::start(async move {
            let pipes = PipePool::new(4, 64 * 1024);
            let abort = AbortHandle::default();
            let conn = DataConn::new(&sock, &pipes, limits(), &abort);
            // As if the file had 300 000 bytes at open and was cut to 200 000 since.
            let short = send_file(&conn, mode, &file, 0, 300_000).await.map_err(|e| e.kind());
            // As if it had 1000 bytes at open and grew since: those 1000 are sent.
            let long = send_file(&conn, mode, &file, 0, 1000).await.map_err(|e| e.kind());
            (short, long)
        });
        assert_eq!(short, Err(io::ErrorKind::UnexpectedEof), "{mode:?}");
        assert_eq!(long, Ok(1000), "{mode:?}");
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 201_000, "{mode:?}: the whole file, then its first 1000 bytes");
    }
}

#[test]
fn a_clean_transfer_returns_its_pipe_to_the_pool() {
    let (_, _, idle) = download(ZeroCopy::Splice, &pattern(100_000), 0, None);
    assert_eq!(idle, 1);
}

#[test]
fn a_stalled_reader_times_out_and_the_pipe_is_not_reused() {
    let data = pattern(16 * 1024 * 1024);
    let (_f, file) = file_with(&data);
    let len = data.len() as u64;
    let (sock, client) = socket_pair();
    let (res, idle) = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 256 * 1024);
        let lim = TransferLimits { stall_timeout: Duration::from_millis(300), rate_bps: 0 };
        let abort = AbortHandle::default();
        let conn = DataConn::new(&sock, &pipes, lim, &abort);
        let res = send_file(&conn, ZeroCopy::Splice, &file, 0, len).await;
        (res, pipes.idle())
    });
    drop(client);
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(idle, 0);
}

#[test]
fn abort_ends_a_stalled_transfer_at_once() {
    let data = pattern(16 * 1024 * 1024);
    let (_f, file) = file_with(&data);
    let len = data.len() as u64;
    let (sock, _client) = socket_pair();
    let res = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 256 * 1024);
        let abort = AbortHandle::default();
        let a2 = abort.clone();
        tokio_uring::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            a2.abort();
        });
        let lim = TransferLimits { stall_timeout: Duration::from_secs(30), rate_bps: 0 };
        let started = std::time::Instant::now();
        let conn = DataConn::new(&sock, &pipes, lim, &abort);
        let res = send_file(&conn, ZeroCopy::Splice, &file, 0, len).await;
        (res, started.elapsed())
    });
    assert!(res.0.is_err());
    assert!(res.1 < Duration::from_secs(5), "took {:?}", res.1);
}

#[test]
fn uploads_land_byte_exact_and_respect_the_size_cap() {
    let data = pattern(2 * 1024 * 1024 + 3);
    let out = tempfile::NamedTempFile::new().unwrap();
    let (sock, mut client) = socket_pair();
    let payload = data.clone();
    let writer = std::thread::spawn(move || {
        client.write_all(&payload).unwrap();
    });
    let file: OwnedFd = std::fs::OpenOptions::new().write(true).open(out.path()).unwrap().into();
    let file = shared(file);
    let got = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 256 * 1024);
        let abort = AbortHandle::default();
        let conn = DataConn::new(&sock, &pipes, limits(), &abort);
        recv_file(&conn, &file, 0, None).await.unwrap()
    });
    writer.join().unwrap();
    assert_eq!(got, data.len() as u64);
    assert!(std::fs::read(out.path()).unwrap() == data);

    let (sock, mut client) = socket_pair();
    let writer = std::thread::spawn(move || {
        let _ = client.write_all(&pattern(1024 * 1024));
    });
    let file: OwnedFd = std::fs::OpenOptions::new().write(true).open(out.path()).unwrap().into();
    let file = shared(file);
    let res = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 64 * 1024);
        let abort = AbortHandle::default();
        let conn = DataConn::new(&sock, &pipes, limits(), &abort);
        recv_file(&conn, &file, 0, Some(1000)).await
    });
    let _ = writer.join();
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::StorageFull);
}

#[test]
fn rate_limit_paces_the_transfer() {
    let data = pattern(300 * 1024);
    let (_f, file) = file_with(&data);
    let len = data.len() as u64;
    let (sock, client) = socket_pair();
    let reader = read_all(client);
    let elapsed = tokio_uring::start(async move {
        let pipes = PipePool::new(4, 256 * 1024);
        let lim = TransferLimits { stall_timeout: Duration::from_secs(5), rate_bps: 1024 * 1024 };
        let t = std::time::Instant::now();
        let abort = AbortHandle::default();
        let conn = DataConn::new(&sock, &pipes, lim, &abort);
        send_file(&conn, ZeroCopy::Splice, &file, 0, len).await.unwrap();
        t.elapsed()
    });
    assert_eq!(reader.join().unwrap().len(), data.len());
    // 300 KiB at 1 MiB/s is ~0.29 s; unlimited loopback would take a millisecond.
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
}

#[test]
fn only_a_budget_of_pipes_is_large_and_a_closed_one_frees_its_place() {
    let pool = PipePool::new(4, 256 * 1024).with_crowding(2, 64 * 1024);
    let (a, b, c) = (pool.take().unwrap(), pool.take().unwrap(), pool.take().unwrap());
    assert_eq!((a.capacity, b.capacity, c.capacity), (256 * 1024, 256 * 1024, 64 * 1024));
    drop(a);
    assert_eq!(pool.take().unwrap().capacity, 256 * 1024, "a closed large pipe frees its place");
    pool.give_back(b);
    assert_eq!(pool.take().unwrap().capacity, 256 * 1024, "an idle pipe is reused as it is");
}
