//! The adapter against an in-memory rustls client: handshakes (TLS 1.2 and 1.3), data both
//! ways, resumption bound to the control session (and repeatable), bad input, close_notify.

use super::*;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, SupportedProtocolVersion};
use std::io::{Read, Write};
use std::sync::Arc;

struct Pki {
    server: TlsServer,
    roots: rustls::RootCertStore,
}

fn pki() -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let server =
        TlsServer::from_pem(ck.cert.pem().as_bytes(), ck.signing_key.serialize_pem().as_bytes(), None)
            .expect("a self-signed certificate and its key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    Pki { server, roots }
}

fn client_config(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    store: Arc<dyn ClientSessionStore>,
) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    c.resumption = Resumption::store(store);
    Arc::new(c)
}

fn client(config: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(Arc::clone(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Moves bytes both ways until neither side has anything to send; returns the plaintext the
/// server decrypted.
fn pump(c: &mut ClientConnection, s: &mut TlsConn) -> Result<Vec<u8>, TlsError> {
    let mut plain = Vec::new();
    for _ in 0..20 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        if !wire.is_empty() {
            s.feed(&wire, &mut plain)?;
        }
        let mut back = Vec::new();
        s.take_ciphertext(&mut back);
        if !back.is_empty() {
            c.read_tls(&mut back.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
        if wire.is_empty() && back.is_empty() {
            break;
        }
    }
    Ok(plain)
}

fn read_client(c: &mut ClientConnection) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = c.reader().read_to_end(&mut got);
    got
}

#[test]
fn handshakes_and_moves_data_both_ways_in_tls12_and_tls13() {
    let pki = pki();
    for (version, name) in [(&rustls::version::TLS13, "TLSv1.3"), (&rustls::version::TLS12, "TLSv1.2")] {
        let config = client_config(&pki, version, Arc::new(ClientSessionMemoryCache::new(8)));
        let mut c = client(&config);
        let mut s = pki.server.session().accept();
        assert!(s.is_handshaking());
        c.writer().write_all(b"USER alice\r\n").unwrap();
        let plain = pump(&mut c, &mut s).unwrap();
        assert!(!s.is_handshaking());
        assert_eq!(s.version(), name);
        assert_eq!(plain, b"USER alice\r\n", "early client data arrives once the handshake is done");
        assert_eq!(s.write(b"331 Password?\r\n"), 15);
        pump(&mut c, &mut s).unwrap();
        assert_eq!(read_client(&mut c), b"331 Password?\r\n");
        assert!(!s.resumed());
    }
}

/// A control connection's handshake and first reply, with which a TLS 1.3 client also reads
/// the tickets sent after the handshake.
fn control_handshake(config: &Arc<ClientConfig>, control_tls: &SessionTls) {
    let mut control = control_tls.accept();
    let mut c = client(config);
    pump(&mut c, &mut control).unwrap();
    control.write(b"200 ok\r\n");
    pump(&mut c, &mut control).unwrap();
    read_client(&mut c);
}

/// Three data connections after the control handshake, each through a client cache.
fn data_connections(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    store: Arc<dyn ClientSessionStore>,
) -> Vec<bool> {
    let config = client_config(pki, version, store);
    let control_tls = pki.server.session();
    control_handshake(&config, &control_tls);
    (0..3)
        .map(|_| {
            let mut data = control_tls.accept();
            let mut dc = client(&config);
            pump(&mut dc, &mut data).unwrap();
            assert!(!data.is_handshaking());
            data.resumed()
        })
        .collect()
}

#[test]
fn data_connections_resume_the_control_session_every_time() {
    let pki = pki();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let resumed = data_connections(&pki, version, Arc::new(ClientSessionMemoryCache::new(8)));
        assert_eq!(resumed, [true, true, true], "{version:?}");
    }
}

#[test]
fn another_control_sessions_ticket_does_not_resume() {
    let pki = pki();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_config(&pki, version, Arc::new(ClientSessionMemoryCache::new(8)));
        let first = pki.server.session();
        control_handshake(&config, &first);
        assert!(first.stored_sessions() > 0);
        // The client offers the first session's ticket to a data connection of another.
        let mut data = pki.server.session().accept();
        let mut dc = client(&config);
        pump(&mut dc, &mut data).unwrap();
        assert!(!data.is_handshaking(), "a full handshake instead");
        assert!(!data.resumed(), "{version:?}: resumed a session of another control connection");
    }
}

#[test]
fn garbage_instead_of_a_client_hello_is_an_error_with_an_alert() {
    let pki = pki();
    let mut s = pki.server.session().accept();
    let mut plain = Vec::new();
    let err = s.feed(b"USER anonymous\r\nPASS x\r\n", &mut plain).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err}");
    assert!(plain.is_empty());
    let mut alert = Vec::new();
    s.take_ciphertext(&mut alert);
    assert_eq!(alert.first(), Some(&0x15), "a TLS alert record goes back: {alert:?}");
    assert!(s.feed(b"more", &mut plain).is_err(), "a failed connection stays failed");
}

#[test]
fn close_notify_is_told_apart_from_a_cut() {
    let pki = pki();
    let config = client_config(&pki, &rustls::version::TLS13, Arc::new(ClientSessionMemoryCache::new(8)));
    let mut c = client(&config);
    let mut s = pki.server.session().accept();
    c.writer().write_all(b"part").unwrap();
    assert_eq!(pump(&mut c, &mut s).unwrap(), b"part");
    assert!(!s.closed_cleanly(), "no close_notify yet: a cut here would be a truncation");
    c.writer().write_all(b"-end").unwrap();
    c.send_close_notify();
    assert_eq!(pump(&mut c, &mut s).unwrap(), b"-end");
    assert!(s.closed_cleanly());
}

#[test]
fn a_record_flood_yields_no_more_plaintext_than_arrived() {
    let pki = pki();
    let config = client_config(&pki, &rustls::version::TLS13, Arc::new(ClientSessionMemoryCache::new(8)));
    let mut c = client(&config);
    let mut s = pki.server.session().accept();
    pump(&mut c, &mut s).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut total = 0;
    for _ in 0..32 {
        c.writer().write_all(&chunk).unwrap();
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let (mut plain, mut fed) = (Vec::new(), 0);
        // Fed in socket-sized pieces, as the io layer does: a piece that completes a record
        // yields that record (at most 16 KiB), and never more than has come in so far.
        for piece in wire.chunks(4096) {
            let before = plain.len();
            s.feed(piece, &mut plain).unwrap();
            fed += piece.len();
            assert!(plain.len() - before <= piece.len() + 16 * 1024);
            assert!(plain.len() <= fed);
        }
        total += plain.len();
    }
    assert_eq!(total, 32 * chunk.len());
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
    let err = TlsServer::from_pem(a.cert.pem().as_bytes(), b.signing_key.serialize_pem().as_bytes(), None)
        .unwrap_err();
    assert_eq!(err, SetupError::KeyMismatch);
    let err = TlsServer::from_pem(b"not pem", a.signing_key.serialize_pem().as_bytes(), None).unwrap_err();
    assert!(matches!(err, SetupError::Certificate(_)), "{err:?}");
    let err = TlsServer::from_pem(a.cert.pem().as_bytes(), b"", None).unwrap_err();
    assert!(matches!(err, SetupError::PrivateKey(_)), "{err:?}");
    let ok = TlsServer::from_pem(
        a.cert.pem().as_bytes(),
        a.signing_key.serialize_pem().as_bytes(),
        Some(b.cert.pem().as_bytes()),
    );
    assert!(ok.is_ok());
    let until = ok.unwrap().not_after_unix().expect("notAfter read");
    assert!(until > 1_700_000_000, "rcgen's default validity runs far into the future: {until}");
}

/// A client session cache that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(&self, name: ServerName<'static>, v: rustls::client::Tls12ClientSessionValue) {
        self.inner.set_tls12_session(name, v)
    }
    fn tls12_session(&self, name: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(&self, name: ServerName<'static>, v: rustls::client::Tls13ClientSessionValue) {
        self.tickets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.insert_tls13_ticket(name, v)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

#[test]
fn an_upload_data_connection_resumes_and_sends_no_tickets() {
    let pki = pki();
    let store =
        Arc::new(CountingStore { inner: ClientSessionMemoryCache::new(8), tickets: Default::default() });
    let config = client_config(&pki, &rustls::version::TLS13, Arc::clone(&store) as _);
    let control_tls = pki.server.session();
    control_handshake(&config, &control_tls);
    let after_control = store.tickets.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after_control > 0, "the control connection hands out tickets");
    // A client that only writes never reads what the server sends after the handshake.
    let mut data = control_tls.accept_upload();
    let mut dc = client(&config);
    pump(&mut dc, &mut data).unwrap();
    assert!(data.resumed());
    assert_eq!(
        store.tickets.load(std::sync::atomic::Ordering::Relaxed),
        after_control,
        "no tickets on uploads"
    );
    // A download's data connection still gets tickets for the next data connections.
    let mut data = control_tls.accept();
    let mut dc = client(&config);
    pump(&mut dc, &mut data).unwrap();
    read_client(&mut dc);
    assert!(data.resumed());
    assert!(store.tickets.load(std::sync::atomic::Ordering::Relaxed) > after_control);
}

/// A client offering only `suite` in `version`.
fn client_with_suite(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    suite: rustls::CipherSuite,
) -> ClientConnection {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.retain(|s| s.suite() == suite);
    let c = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    client(&Arc::new(c))
}

#[test]
fn every_suite_hands_its_keys_over_in_the_kernel_layout() {
    use kernel::{KernelCipher, KernelVersion};
    use rustls::CipherSuite as C;
    let pki = pki();
    let cases = [
        (&rustls::version::TLS13, C::TLS13_AES_128_GCM_SHA256, KernelVersion::Tls13, KernelCipher::Aes128Gcm),
        (&rustls::version::TLS13, C::TLS13_AES_256_GCM_SHA384, KernelVersion::Tls13, KernelCipher::Aes256Gcm),
        (
            &rustls::version::TLS13,
            C::TLS13_CHACHA20_POLY1305_SHA256,
            KernelVersion::Tls13,
            KernelCipher::Chacha20Poly1305,
        ),
        (
            &rustls::version::TLS12,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            KernelVersion::Tls12,
            KernelCipher::Aes128Gcm,
        ),
        (
            &rustls::version::TLS12,
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            KernelVersion::Tls12,
            KernelCipher::Aes256Gcm,
        ),
        (
            &rustls::version::TLS12,
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            KernelVersion::Tls12,
            KernelCipher::Chacha20Poly1305,
        ),
    ];
    for (version, suite, kversion, kcipher) in cases {
        let mut c = client_with_suite(&pki, version, suite);
        let mut s = pki.server.session().accept();
        pump(&mut c, &mut s).unwrap();
        let want = kernel::KernelSuite { version: kversion, cipher: kcipher };
        assert_eq!(s.kernel_suite(), Some(want), "{suite:?}");
        let keys = s.into_kernel_keys().expect("nothing left to send");
        let (key, salt, iv) = match kcipher {
            KernelCipher::Aes128Gcm => (16, 4, 8),
            KernelCipher::Aes256Gcm => (32, 4, 8),
            KernelCipher::Chacha20Poly1305 => (32, 0, 12),
        };
        for k in [&keys.tx, &keys.rx] {
            assert_eq!(k.suite, want);
            assert_eq!((k.key.len(), k.salt.len(), k.iv.len()), (key, salt, iv), "{suite:?}");
        }
        // The server sent its Finished (TLS 1.2) or its tickets (TLS 1.3) under these keys;
        // it read the client's Finished under them only in TLS 1.2.
        assert!(u64::from_be_bytes(keys.tx.rec_seq) > 0, "{suite:?}");
        let rx = u64::from_be_bytes(keys.rx.rec_seq);
        assert_eq!(rx, if kversion == KernelVersion::Tls12 { 1 } else { 0 }, "{suite:?}");
        assert!(!format!("{:?}", keys.tx).contains(&format!("{:?}", keys.tx.key)), "keys stay out of logs");
    }
}

#[test]
fn keys_are_not_handed_over_while_ciphertext_waits() {
    let pki = pki();
    let config = client_config(&pki, &rustls::version::TLS13, Arc::new(ClientSessionMemoryCache::new(8)));
    let mut c = client(&config);
    let mut s = pki.server.session().accept();
    pump(&mut c, &mut s).unwrap();
    s.write(b"not sent yet");
    assert!(s.into_kernel_keys().is_err(), "the kernel would number its records wrong");
}

#[test]
fn record_headers_and_control_records_are_read() {
    use kernel::{record_body_len, ControlRecord};
    assert_eq!(record_body_len(&[22, 3, 1, 0x02, 0x00]), Ok(512));
    assert_eq!(record_body_len(&[23, 3, 3, 0x48, 0x00]), Ok(0x4800));
    assert!(record_body_len(&[23, 3, 3, 0x48, 0x01]).is_err(), "longer than 2^14 + 2048");
    assert!(record_body_len(b"USER ").is_err());
    assert!(record_body_len(&[22, 2, 0, 0, 1]).is_err());
    assert_eq!(ControlRecord::parse(21, &[1, 0]), ControlRecord::CloseNotify);
    assert_eq!(ControlRecord::parse(21, &[2, 20]), ControlRecord::Alert { fatal: true, description: 20 });
    assert_eq!(ControlRecord::parse(22, &[24, 0, 0, 1, 0]), ControlRecord::KeyUpdate);
    assert_eq!(ControlRecord::parse(22, &[1, 0, 0, 0]), ControlRecord::Handshake(1));
    assert_eq!(ControlRecord::parse(23, b"x"), ControlRecord::Data);
    assert_eq!(ControlRecord::parse(21, &[]), ControlRecord::Other(21));
}

proptest::proptest! {
    /// The kernel's TLS 1.2 AES-GCM explicit nonces (start, start + 1, ...) never repeat one
    /// rustls used with the same key (its start ^ i for every record i before the hand-off).
    #[test]
    fn tls12_kernel_nonces_never_repeat_rustls_ones(start: u64, seq in 0u64..5000, offset in 0u64..1 << 40) {
        let first = kernel::tls12_gcm_counter_start(start, seq);
        for k in [0, 1, 2, offset, offset + 1] {
            let kernel_nonce = first.wrapping_add(k);
            let i = kernel_nonce ^ start;
            proptest::prop_assert!(i >= seq, "kernel record {k} reuses rustls's nonce of record {i}");
        }
    }
}
