//! Raw-socket probes of the FTP rules that need the real file system behind the core: SIZE in
//! both TYPEs, REST past the end of a file, MLSD of a file, LIST of a file, NLST of an empty
//! directory, STOU's `150 FILE:` reply, and the multi-line reply framing of FEAT and MLST.

mod common;

use common::ftp::{put, FtpServer, Opts, PASS, USER};
use common::ftp_connect;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// One control connection, logged in.
struct Ctl {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Ctl {
    fn login(srv: &FtpServer, user: &str, pass: &str) -> Ctl {
        let (r, w, greeting) = ftp_connect(srv.server.ftp_addr());
        assert!(greeting.starts_with("220 "), "{greeting}");
        let mut c = Ctl { r, w };
        assert!(c.cmd(&format!("USER {user}")).starts_with("331 "));
        let reply = c.cmd(&format!("PASS {pass}"));
        assert!(reply.starts_with("230 "), "{reply}");
        c
    }

    /// One whole reply: through the line `NNN ` when the first is `NNN-` (RFC 959 §4.2).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "every reply line ends in CRLF: {line:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{} ", &line[..3]);
            loop {
                line.clear();
                self.r.read_line(&mut line).unwrap();
                assert!(!line.is_empty(), "connection closed inside a multi-line reply: {all}");
                all.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        all
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EPSV, then `line`: the first reply, the data received, and the final reply (empty
    /// when the first already refused).
    fn transfer(&mut self, line: &str) -> (String, Vec<u8>, String) {
        let epsv = self.cmd("EPSV");
        let port: u16 = epsv.split("(|||").nth(1).and_then(|s| s.split('|').next()).unwrap().parse().unwrap();
        let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let first = self.cmd(line);
        if !first.starts_with("150") {
            return (first, Vec::new(), String::new());
        }
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).unwrap();
        (first, bytes, self.reply())
    }
}

#[test]
fn size_is_the_file_length_in_either_type() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("lines.txt"), b"one\ntwo\r\nthree\n");
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    // As vsftpd: the length on disk in TYPE A (the default) too, although RETR in TYPE A
    // sends a CR before each bare LF.
    assert_eq!(c.cmd("SIZE lines.txt"), "213 15\r\n");
    let (_, ascii, done) = c.transfer("RETR lines.txt");
    assert_eq!((ascii.as_slice(), done.get(..4)), (&b"one\r\ntwo\r\nthree\r\n"[..], Some("226 ")));
    assert_eq!(c.cmd("TYPE I"), "200 Switching to Binary mode.\r\n");
    assert_eq!(c.cmd("SIZE lines.txt"), "213 15\r\n");
    assert!(c.cmd("SIZE /").starts_with("550 "), "SIZE of a directory");
    assert!(c.cmd("MDTM nope").starts_with("550 "), "MDTM of a missing file");
}

#[test]
fn rest_past_the_end_is_554_and_at_the_end_sends_nothing() {
    let srv = FtpServer::start(Opts::default());
    put(&srv.root().join("ten.bin"), b"0123456789");
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    c.cmd("TYPE I");
    assert!(c.cmd("REST 11").starts_with("350 "));
    let (first, _, _) = c.transfer("RETR ten.bin");
    assert!(first.starts_with("554 "), "RFC 3659 §5: {first}");
    assert!(c.cmd("REST 10").starts_with("350 "));
    let (first, data, done) = c.transfer("RETR ten.bin");
    assert!(first.starts_with("150 ") && data.is_empty() && done.starts_with("226 "), "{first}{done}");
    assert!(c.cmd("REST 4").starts_with("350 "));
    let (_, data, _) = c.transfer("RETR ten.bin");
    assert_eq!(data, b"456789");
}

#[test]
fn listings_of_files_and_empty_directories() {
    let srv = FtpServer::start(Opts::default());
    std::fs::create_dir(srv.root().join("empty")).unwrap();
    let mut c = Ctl::login(&srv, "anonymous", "guest@");
    // RFC 3659 §7.2: MLSD of a file is 501 (MLST is the command for one object).
    let (first, _, _) = c.transfer("MLSD hello.txt");
    assert!(first.starts_with("501 "), "{first}");
    // RFC 959 §4.1.3: LIST of a file shows that file.
    let (_, data, done) = c.transfer("LIST hello.txt");
    let text = String::from_utf8(data).unwrap();
    assert!(
        text.ends_with(" hello.txt\r\n") && text.lines().count() == 1 && done.starts_with("226 "),
        "{text}"
    );
    // An empty directory: 150, no bytes, 226.
    let (first, data, done) = c.transfer("NLST empty");
    assert!(first.starts_with("150 ") && data.is_empty() && done.starts_with("226 "), "{first}{done}");
    let (_, data, _) = c.transfer("LIST -la empty");
    assert!(data.is_empty(), "{}", String::from_utf8_lossy(&data));
}

#[test]
fn multi_line_replies_feat_mlst_and_stou_names_its_file() {
    let srv = FtpServer::start(Opts::default());
    let mut c = Ctl::login(&srv, USER, PASS);
    // RFC 2389 §3.2: 211- first line, each feature line starting with a space, 211 last.
    let feat = c.cmd("FEAT");
    let lines: Vec<&str> = feat.lines().collect();
    assert_eq!((lines[0], *lines.last().unwrap()), ("211-Features:", "211 End"), "{feat}");
    assert!(lines[1..lines.len() - 1].iter().all(|l| l.starts_with(' ')), "{feat}");
    // RFC 3659 §7.2: MLST's fact line starts with a space; facts are name=value; pairs.
    let mlst = c.cmd("MLST hello.txt");
    let fact = mlst.lines().nth(1).unwrap();
    assert!(mlst.starts_with("250-") && mlst.ends_with("\r\n250 End\r\n"), "{mlst}");
    assert!(fact.starts_with(" type=file;size=17;modify=") && fact.ends_with("; /hello.txt"), "{fact}");
    let modify = fact.split("modify=").nth(1).unwrap().split(';').next().unwrap();
    assert!(modify.len() == 14 && modify.bytes().all(|b| b.is_ascii_digit()), "{fact}");
    // RFC 1123 §4.1.2.9: STOU's 150 names the file it creates.
    assert!(c.cmd("CWD upload").starts_with("250 "));
    let epsv = c.cmd("EPSV");
    let port: u16 = epsv.split("(|||").nth(1).and_then(|s| s.split('|').next()).unwrap().parse().unwrap();
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let first = c.cmd("STOU");
    let name = first.strip_prefix("150 FILE: ").unwrap_or_else(|| panic!("{first}")).trim_end();
    data.write_all(b"unique").unwrap();
    drop(data);
    assert!(c.reply().starts_with("226 "));
    assert_eq!(std::fs::read(srv.root().join("upload").join(name)).unwrap(), b"unique");
}
