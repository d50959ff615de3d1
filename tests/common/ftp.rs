//! FTP end-to-end helpers: a Ferry started from a generated configuration (its own passive
//! port range, a writable virtual user), random files, and real clients (curl, lftp,
//! python3 ftplib) run with a time limit.

use super::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The writable virtual user every test server has.
pub const USER: &str = "alice";
/// Its password.
pub const PASS: &str = "wonderland";

/// A Ferry FTP server with a served directory and a configuration file.
pub struct FtpServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub passive: (u16, u16),
    /// Arguments and environment it was started with (for [`FtpServer::another`]).
    args: Vec<String>,
    env: Vec<(String, String)>,
    _config: tempfile::TempDir,
}

/// Options for [`FtpServer::start`].
#[derive(Default)]
pub struct Opts<'a> {
    /// Extra TOML appended to the generated file (inside no section: start with `[...]`).
    pub toml: &'a str,
    /// Extra command-line arguments.
    pub args: &'a [&'a str],
    /// Environment for the server (`FERRY_FTP__LIMITS__MAX_SESSIONS`, ...).
    pub env: &'a [(&'a str, &'a str)],
}

fn password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| ferry::auth::hash_password(PASS).unwrap())
}

/// A passive range of 64 ports unlikely to be used by another test running at the same time.
fn passive_range() -> (u16, u16) {
    let base = 20000 + (super::free_port() % 100) * 100 + (std::process::id() % 10) as u16 * 6;
    (base, base + 63)
}

impl FtpServer {
    /// Starts Ferry on fresh ports with `[ftp]` settings for tests; `writable` lists the dirs
    /// created 0777 under the root so the unprivileged service user can write there.
    pub fn start(opts: Opts) -> FtpServer {
        let dir = super::served_dir();
        Self::start_in(dir, opts)
    }

    /// As `start` with a prepared served directory.
    pub fn start_in(dir: tempfile::TempDir, opts: Opts) -> FtpServer {
        use std::os::unix::fs::PermissionsExt;
        let up = dir.path().join("upload");
        std::fs::create_dir_all(&up).unwrap();
        std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o777)).unwrap();
        let passive = passive_range();
        let config = tempfile::tempdir().unwrap();
        let text = format!(
            r#"[ftp]
hide_ids = true
[ftp.passive]
ports = "{}-{}"
[ftp.limits]
login_failure_delay_ms = 200
data_timeout_secs = 20
[[ftp.users]]
name = "{USER}"
password_hash = "{}"
permissions = ["read", "write", "append", "delete", "rename", "mkdir"]
{}
"#,
            passive.0,
            passive.1,
            password_hash(),
            opts.toml
        );
        let path = config.path().join("ferry.toml");
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        // Two workers unless the test chose its own count (the flag may be given once).
        if !opts.args.contains(&"--workers") {
            args.extend(["--workers", "2"]);
        }
        args.extend_from_slice(opts.args);
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let env: Vec<_> = opts.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let server = launch(dir.path(), &args, &env);
        FtpServer { server, dir, passive, args, env, _config: config }
    }

    /// Another Ferry process with the same configuration serving the same directory, on
    /// fresh ports: a second process on one tree, or the restart after a crash.
    pub fn another(&self) -> Server {
        launch(self.dir.path(), &self.args, &self.env)
    }

    /// `ftp://127.0.0.1:PORT` (or `[::1]` when `v6`).
    pub fn url(&self, v6: bool) -> String {
        let host = if v6 { "[::1]" } else { "127.0.0.1" };
        format!("ftp://{host}:{}", self.server.ftp_port)
    }

    /// `ftp://alice:wonderland@127.0.0.1:PORT`.
    pub fn user_url(&self) -> String {
        format!("ftp://{USER}:{PASS}@127.0.0.1:{}", self.server.ftp_port)
    }

    /// The served directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far, without terminal colour sequences.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Waits up to 5 s until the log contains `needle`; the log then.
    pub fn wait_log(&self, needle: &str) -> String {
        self.server.wait_log(needle)
    }
}

fn launch(root: &Path, args: &[String], env: &[(String, String)]) -> Server {
    let mut cmd = Command::new(super::ferry_bin());
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(cmd, root, super::free_port(), super::free_port(), &args)
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::Rng::fill(&mut rand::thread_rng(), &mut v[..]);
    v
}

/// Writes `data` to `path` world-readable, creating parents.
pub fn put(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Runs `cmd` with stdin `input`, killing it after `limit`; panics on timeout.
pub fn run(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let Some(status) = super::wait_status(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {limit:?}");
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

/// Runs curl with `args` (silent, showing errors), 60 s at most.
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "50"]).args(args);
    run(cmd, b"", Duration::from_secs(60))
}

/// Runs an lftp script against `url`, 120 s at most.
pub fn lftp(url: &str, script: &str) -> Output {
    let mut cmd = Command::new("lftp");
    let full =
        format!("set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; open {url}; {script}");
    cmd.args(["-c", &full]);
    run(cmd, b"", Duration::from_secs(120))
}

/// Runs a python3 script with `args`, 60 s at most.
pub fn python(script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    run(cmd, b"", Duration::from_secs(60))
}

/// Panics with both streams unless `out` succeeded.
pub fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory for client-side files.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A file's bytes.
pub fn read(p: impl Into<PathBuf>) -> Vec<u8> {
    std::fs::read(p.into()).unwrap()
}

/// One control connection, logged in.
pub struct Ctl {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Ctl {
    pub fn login(srv: &FtpServer, user: &str, pass: &str) -> Ctl {
        Ctl::login_to(&srv.server, user, pass)
    }

    /// As [`Ctl::login`], to any Ferry process (one started by [`FtpServer::another`]).
    pub fn login_to(server: &Server, user: &str, pass: &str) -> Ctl {
        Ctl::login_from_to(server, std::net::Ipv4Addr::LOCALHOST.into(), user, pass)
    }

    /// As `login`, from the local address `from` (127.0.0.2 is another client IP).
    pub fn login_from(srv: &FtpServer, from: std::net::IpAddr, user: &str, pass: &str) -> Ctl {
        Ctl::login_from_to(&srv.server, from, user, pass)
    }

    fn login_from_to(server: &Server, from: std::net::IpAddr, user: &str, pass: &str) -> Ctl {
        let (r, w, greeting) = super::ftp_connect_from(from, server.ftp_addr());
        assert!(greeting.starts_with("220 "), "{greeting}");
        let mut c = Ctl { r, w };
        assert!(c.cmd(&format!("USER {user}")).starts_with("331 "));
        let reply = c.cmd(&format!("PASS {pass}"));
        assert!(reply.starts_with("230 "), "{reply}");
        c
    }

    /// One whole reply: through the line `NNN ` when the first is `NNN-` (RFC 959 §4.2).
    pub fn reply(&mut self) -> String {
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

    pub fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EPSV: the port from `229 ... (|||port|)`, or the whole reply when refused.
    pub fn epsv_port(&mut self) -> Result<u16, String> {
        let reply = self.cmd("EPSV");
        let port = reply.split("(|||").nth(1).and_then(|s| s.split('|').next()).and_then(|p| p.parse().ok());
        port.ok_or(reply)
    }

    /// EPSV, and the data connection to the port it names.
    pub fn epsv(&mut self) -> TcpStream {
        let port = self.epsv_port().unwrap_or_else(|reply| panic!("EPSV refused: {reply}"));
        TcpStream::connect(("127.0.0.1", port)).unwrap()
    }

    /// EPSV, then `line`, sending `bytes` once it is accepted: the first and final replies
    /// (the final one empty when the first refused). A server that gives up midway closes
    /// the data connection, so a failed write is left for the final reply to explain.
    pub fn store(&mut self, line: &str, bytes: &[u8]) -> (String, String) {
        let mut data = self.epsv();
        let first = self.cmd(line);
        if !first.starts_with("150") {
            return (first, String::new());
        }
        let _ = data.write_all(bytes);
        drop(data);
        (first, self.reply())
    }

    /// EPSV, then `line`: the first reply, the data received, and the final reply (empty
    /// when the first already refused).
    pub fn transfer(&mut self, line: &str) -> (String, Vec<u8>, String) {
        let mut data = self.epsv();
        let first = self.cmd(line);
        if !first.starts_with("150") {
            return (first, Vec::new(), String::new());
        }
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).unwrap();
        (first, bytes, self.reply())
    }
}
