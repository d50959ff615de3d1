//! What kernel TLS (the `tls` ULP, Documentation/networking/tls.rst) needs from a finished
//! handshake: each direction's key, salt, IV and record number in the kernel's layout, and the
//! reading of record headers and of the non-data records the kernel hands back.

use rustls::{CipherSuite, ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

/// The TLS versions the kernel takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The AEAD ciphers Ferry offers, all of which the kernel's `tls` ULP knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelCipher {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305,
}

/// A version and cipher pair: what the kernel is asked to take on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelSuite {
    /// Protocol version.
    pub version: KernelVersion,
    /// Record cipher.
    pub cipher: KernelCipher,
}

impl KernelSuite {
    /// Every pair Ferry can negotiate (the start-up probe tries each).
    pub const ALL: [KernelSuite; 6] = [
        KernelSuite { version: KernelVersion::Tls13, cipher: KernelCipher::Aes128Gcm },
        KernelSuite { version: KernelVersion::Tls13, cipher: KernelCipher::Aes256Gcm },
        KernelSuite { version: KernelVersion::Tls13, cipher: KernelCipher::Chacha20Poly1305 },
        KernelSuite { version: KernelVersion::Tls12, cipher: KernelCipher::Aes128Gcm },
        KernelSuite { version: KernelVersion::Tls12, cipher: KernelCipher::Aes256Gcm },
        KernelSuite { version: KernelVersion::Tls12, cipher: KernelCipher::Chacha20Poly1305 },
    ];

    /// The pair of a negotiated rustls suite; `None` for one the kernel cannot take.
    pub fn of(version: ProtocolVersion, suite: CipherSuite) -> Option<KernelSuite> {
        use CipherSuite as C;
        let version = match version {
            ProtocolVersion::TLSv1_3 => KernelVersion::Tls13,
            ProtocolVersion::TLSv1_2 => KernelVersion::Tls12,
            _ => return None,
        };
        let cipher = match suite {
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => KernelCipher::Aes128Gcm,
            C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => KernelCipher::Aes256Gcm,
            C::TLS13_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => KernelCipher::Chacha20Poly1305,
            _ => return None,
        };
        Some(KernelSuite { version, cipher })
    }

    /// `TLSv1.3 AES-128-GCM` and the like, for logs.
    pub fn name(&self) -> String {
        let v = match self.version {
            KernelVersion::Tls12 => "TLSv1.2",
            KernelVersion::Tls13 => "TLSv1.3",
        };
        let c = match self.cipher {
            KernelCipher::Aes128Gcm => "AES-128-GCM",
            KernelCipher::Aes256Gcm => "AES-256-GCM",
            KernelCipher::Chacha20Poly1305 => "ChaCha20-Poly1305",
        };
        format!("{v} {c}")
    }
}

/// One direction's state in the kernel's `tls12_crypto_info_*` layout (the same structures
/// serve TLS 1.3): for AES-GCM a 4-byte salt and an 8-byte IV, for ChaCha20-Poly1305 no salt
/// and a 12-byte IV; the record sequence number big-endian.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKeys {
    /// Version and cipher.
    pub suite: KernelSuite,
    /// AEAD key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// Implicit part of the nonce (4 bytes for AES-GCM, empty for ChaCha20-Poly1305).
    pub salt: Vec<u8>,
    /// The rest of the nonce (8 bytes for AES-GCM, 12 for ChaCha20-Poly1305).
    pub iv: Vec<u8>,
    /// Sequence number of the next record.
    pub rec_seq: [u8; 8],
}

impl std::fmt::Debug for DirectionKeys {
    // Keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKeys").field("suite", &self.suite).finish_non_exhaustive()
    }
}

/// Both directions' keys, taken from rustls once the handshake is done.
#[derive(Debug, Clone)]
pub struct KernelKeys {
    /// What the kernel encrypts with (TLS_TX).
    pub tx: DirectionKeys,
    /// What the kernel decrypts with (TLS_RX).
    pub rx: DirectionKeys,
}

impl KernelKeys {
    /// Converts rustls's extracted secrets for `version`.
    pub fn new(version: KernelVersion, secrets: ExtractedSecrets) -> KernelKeys {
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        KernelKeys {
            tx: direction(version, tx_seq, &tx, Direction::Transmit),
            rx: direction(version, rx_seq, &rx, Direction::Receive),
        }
    }
}

#[derive(PartialEq, Eq)]
enum Direction {
    Transmit,
    Receive,
}

fn direction(
    version: KernelVersion,
    seq: u64,
    secret: &ConnectionTrafficSecrets,
    dir: Direction,
) -> DirectionKeys {
    let (cipher, key, iv) = match secret {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (KernelCipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (KernelCipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (KernelCipher::Chacha20Poly1305, key, iv),
        // rustls marks the enum non-exhaustive; a suite it adds is never one Ferry offers.
        #[allow(unreachable_patterns)]
        _ => unreachable!("Ferry offers AES-GCM and ChaCha20-Poly1305 only"),
    };
    let iv = iv.as_ref();
    let (salt, mut rest) = match cipher {
        KernelCipher::Chacha20Poly1305 => (Vec::new(), iv.to_vec()),
        _ => (iv[..4].to_vec(), iv[4..].to_vec()),
    };
    if version == KernelVersion::Tls12
        && cipher != KernelCipher::Chacha20Poly1305
        && dir == Direction::Transmit
    {
        let explicit = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        rest = tls12_gcm_counter_start(explicit, seq).to_be_bytes().to_vec();
    }
    DirectionKeys {
        suite: KernelSuite { version, cipher },
        key: key.as_ref().to_vec(),
        salt,
        iv: rest,
        rec_seq: seq.to_be_bytes(),
    }
}

/// Where the kernel's TLS 1.2 AES-GCM explicit nonce may start so that it never repeats one
/// rustls already used with this key.
///
/// The nonce is the salt and 8 explicit bytes sent in each record. rustls makes the explicit
/// part `start ^ seq` (its TLS 1.3 construction); the kernel takes the 8 bytes it is given and
/// adds one per record. Handing it `start` would reuse rustls's nonce of record 0 (the
/// Finished message) at once. The nonces rustls used, `start ^ i` for `i < seq`, differ from
/// `start` only in the low bits that `seq - 1` needs; the kernel gets the first value past that
/// aligned block and counts up from there, so it would meet the block again only after 2^64
/// records. The receiver reads the explicit nonce off the wire, so any unique start is valid.
pub fn tls12_gcm_counter_start(start: u64, seq: u64) -> u64 {
    if seq == 0 {
        return start;
    }
    let bits = 64 - (seq - 1).leading_zeros();
    let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    (start | mask).wrapping_add(1)
}

/// TLS record header length (type, version, length).
pub const RECORD_HEADER: usize = 5;

/// The body length a record header announces, or why the header is not TLS: a handshake that
/// reads whole records only (so nothing past the handshake is taken from the socket before the
/// kernel takes over) reads this many bytes next.
pub fn record_body_len(header: &[u8; RECORD_HEADER]) -> Result<usize, &'static str> {
    // change_cipher_spec, alert, handshake, application_data (20-23).
    if !(20..=23).contains(&header[0]) {
        return Err("not a TLS record (unknown content type)");
    }
    if header[1] != 3 {
        return Err("not a TLS record (version)");
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    // RFC 5246 §6.2.3: at most 2^14 + 2048 bytes of ciphertext.
    if len > (1 << 14) + 2048 {
        return Err("TLS record too long");
    }
    Ok(len)
}

/// A record of a type other than application data, as kernel TLS hands it back (its content
/// type from the `TLS_GET_RECORD_TYPE` control message, its plaintext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecord {
    /// The peer's close_notify alert: the data before it is all there is.
    CloseNotify,
    /// Any other alert (`fatal`, RFC 8446 §6 description code).
    Alert {
        /// Level 2 (fatal) rather than 1 (warning).
        fatal: bool,
        /// The alert's description code.
        description: u8,
    },
    /// A TLS 1.3 KeyUpdate: new keys the kernel path does not take (the transfer fails).
    KeyUpdate,
    /// Another handshake message (its type), e.g. a renegotiation attempt.
    Handshake(u8),
    /// Application data after all (the caller keeps it).
    Data,
    /// Any other content type.
    Other(u8),
}

impl ControlRecord {
    /// Reads a record of content type `content_type` with plaintext `payload`.
    pub fn parse(content_type: u8, payload: &[u8]) -> ControlRecord {
        match (content_type, payload) {
            (21, [_, 0, ..]) => ControlRecord::CloseNotify,
            (21, [level, description, ..]) => {
                ControlRecord::Alert { fatal: *level == 2, description: *description }
            }
            (22, [24, ..]) => ControlRecord::KeyUpdate,
            (22, [t, ..]) => ControlRecord::Handshake(*t),
            (23, _) => ControlRecord::Data,
            (t, _) => ControlRecord::Other(t),
        }
    }

    /// For the log line of a transfer it ended.
    pub fn describe(&self) -> String {
        match self {
            ControlRecord::CloseNotify => "close_notify".into(),
            ControlRecord::Alert { fatal, description } => {
                format!("{} alert {description}", if *fatal { "fatal" } else { "warning" })
            }
            ControlRecord::KeyUpdate => "a TLS 1.3 KeyUpdate, which the kernel path does not follow".into(),
            ControlRecord::Handshake(t) => format!("handshake message {t} after the handshake"),
            ControlRecord::Data => "application data".into(),
            ControlRecord::Other(t) => format!("a record of content type {t}"),
        }
    }
}

/// The alert record (type 21) that ends a stream cleanly: warning level, close_notify.
pub const CLOSE_NOTIFY: [u8; 2] = [1, 0];
/// Content type of alerts.
pub const ALERT: u8 = 21;
