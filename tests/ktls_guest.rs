//! Kernel TLS where a kernel has it: a QEMU guest boots Debian's stock kernel
//! (`linux-image-amd64`, which builds TLS as a module) with Ferry, busybox and curl in its
//! initramfs, loopback networking only. In it: FTPS RETR and STOR over kTLS for every TLS
//! version and cipher the guest kernel takes (bytes checked by sha256, the kernel path by each
//! transfer's log line); uploads broken mid-transfer by a rustls client (this test binary, run
//! in the guest): a TLS 1.3 KeyUpdate, a corrupted record, a cut without close_notify, each
//! failing cleanly (426/451) with the control connection still usable; then one large RETR and
//! STOR on the kernel path and on the user-space path (`ktls = "off"`), reporting MB/s and
//! server CPU per GB for both.
//!
//! The development kernel has no CONFIG_TLS, hence the guest. Reports SKIPPED with the reason
//! where QEMU or the kernel package cannot be had (tests/run-all.sh installs QEMU and fetches
//! the package into /var/tmp/ferry-tools/ktls-guest). Bounded in time; QEMU is killed on every
//! way out. `FERRY_GUEST_FERRY` picks the ferry binary (a release build gives meaningful MB/s),
//! `FERRY_GUEST_MB` the large file's size, `FERRY_GUEST_ACCEL=tcg|kvm` the accelerator.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The whole guest run, boot to power-off.
const GUEST_BUDGET: Duration = Duration::from_secs(240);
/// How long a KVM guest may take to say it is up before TCG takes over.
const KVM_BOOT: Duration = Duration::from_secs(30);
/// Large RETR+STOR pairs per path, taking turns; the median is reported.
const ROUNDS: usize = 3;
/// Where tests/run-all.sh leaves the kernel package, unpacked.
const CACHE: &str = "/var/tmp/ferry-tools/ktls-guest";

fn skipped(why: &str) {
    eprintln!("SKIPPED: kernel TLS guest test: {why}");
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A kernel image and its module tree, from one linux-image package.
struct Kernel {
    vmlinuz: PathBuf,
    modules: PathBuf,
    release: String,
}

/// The unpacked kernel in `dir`, if one is there.
fn unpacked(dir: &Path) -> Option<Kernel> {
    let boot = dir.join("unpacked/boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))?;
    let release = vmlinuz.file_name()?.to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let modules = dir.join("unpacked/lib/modules").join(&release);
    modules.join("kernel/net/tls").is_dir().then_some(Kernel { vmlinuz, modules, release })
}

/// Debian's stock kernel: unpacked from the cache, else downloaded there with apt-get.
fn kernel() -> Result<Kernel, String> {
    let dir = PathBuf::from(std::env::var("FERRY_GUEST_CACHE").unwrap_or_else(|_| CACHE.into()));
    if let Some(k) = unpacked(&dir) {
        return Ok(k);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .map_err(|e| format!("no apt to find linux-image-amd64: {e}"))?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
        .ok_or("linux-image-amd64 names no kernel package (apt-get update?)")?
        .to_string();
    run(Command::new("apt-get").args(["download", "-q", &pkg]).current_dir(&dir))
        .map_err(|e| format!("cannot download {pkg}: {e}"))?;
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_"))))
        .ok_or("apt-get download left no .deb")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.join("unpacked")))?;
    let _ = std::fs::remove_file(&deb);
    unpacked(&dir).ok_or_else(|| format!("{pkg} holds no vmlinuz or no net/tls module"))
}

/// Module files under `modules/kernel`, by module name (`-` read as `_`).
fn module_index(modules: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) =
                p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split(".ko").next())
            {
                out.insert(name.replace('-', "_"), p.clone());
            }
        }
    }
    out
}

/// A module's bytes, decompressed.
fn module_bytes(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        Some(t) => Command::new(t).arg("-dc").arg(path).output().expect("decompress a module").stdout,
        None => std::fs::read(path).expect("read a module"),
    }
}

/// The `depends=` list in a module's .modinfo.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else { return Vec::new() };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(0);
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// The kTLS module and the crypto it asks for (whichever are modules in this kernel), with
/// their dependencies, in load order: name -> bytes.
fn guest_modules(kernel: &Kernel) -> Vec<(String, Vec<u8>)> {
    const WANTED: &[&str] = &[
        "tls",
        "gcm",
        "ctr",
        "ghash_generic",
        "ghash_clmulni_intel",
        "aesni_intel",
        "chacha20poly1305",
        "chacha_x86_64",
        "poly1305_x86_64",
        "chacha_generic",
        "poly1305_generic",
    ];
    let index = module_index(&kernel.modules);
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    fn visit(name: &str, index: &BTreeMap<String, PathBuf>, order: &mut Vec<(String, Vec<u8>)>) {
        if order.iter().any(|(n, _)| n == name) {
            return;
        }
        let Some(path) = index.get(name) else { return };
        let bytes = module_bytes(path);
        for dep in depends(&bytes) {
            visit(&dep, index, order);
        }
        order.push((name.to_string(), bytes));
    }
    for name in WANTED {
        visit(name, &index, &mut order);
    }
    order
}

/// Shared libraries `bin` loads, from ldd.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    out.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A binary without its debug information (a debug build is mostly that), when `strip` is
/// there; else as it is.
fn stripped(bin: &Path) -> Result<Vec<u8>, String> {
    let tmp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(tmp.path())
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::read(if ok { tmp.path() } else { bin }).map_err(|e| format!("{}: {e}", bin.display()))
}

/// An initramfs in the kernel's "newc" cpio format, built in memory.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    dirs: Vec<String>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields =
            [self.ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    /// Creates the parents of `path`.
    fn parents(&mut self, path: &str) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for i in 1..parts.len() {
            let dir = parts[..i].join("/");
            if !self.dirs.contains(&dir) {
                self.entry(&dir, 0o040755, (0, 0), &[]);
                self.dirs.push(dir);
            }
        }
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.parents(path);
        self.entry(path, 0o100000 | mode, (0, 0), data);
    }

    fn dir(&mut self, path: &str) {
        self.parents(&format!("{path}/x"));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /srv
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs srv /srv
echo "FERRY-GUEST-UP release=$(uname -r) cpus=$(nproc)"
echo /bin/false > /proc/sys/kernel/modprobe
for m in $(cat /modules/order); do
  insmod /modules/$m.ko 2>/tmp/insmod || echo "insmod $m: $(cat /tmp/insmod)"
done
grep -w tls /proc/modules >/dev/null && echo "GUEST tls module loaded"
ip link set lo up
mkdir -p /srv/pub/upload && chmod 755 /srv/pub && chmod 777 /srv/pub/upload
dd if=/dev/urandom of=/srv/pub/small.bin bs=1024 count=1536 2>/dev/null
dd if=/dev/urandom of=/srv/pub/big.bin bs=1048576 count=@MB@ 2>/dev/null
sum() { sha256sum "$1" | cut -d' ' -f1; }
# cpu SERVER: the server process's user + system ticks so far.
cpu() { eval p=\$PID_$1; set -- $(cat /proc/$p/stat); echo $((${14} + ${15})); }
start() {
  ferry --config /etc/ferry/$1.toml --root /srv/pub --workers 2 --ftp-port $2 2>/tmp/$1.log &
  eval PID_$1=$!
  for i in $(seq 100); do grep -q "ferry serving" /tmp/$1.log && return; sleep 0.1; done
  echo "GUEST ferry $1 did not start"; cat /tmp/$1.log
}
# measure SERVER PORT NAME FILE CURLOPTS: a RETR then a STOR of FILE, each checked.
measure() {
  server=$1 port=$2 name=$3 file=$4; shift 4
  want=$(sum /srv/pub/$file)
  c0=$(cpu $server)
  w=$(curl -sS -k --ssl-reqd "$@" -o /tmp/got -w '%{size_download} %{time_pretransfer} %{time_total}' ftp://anonymous:x@127.0.0.1:$port/$file 2>/tmp/curl.err)
  rc=$?; c1=$(cpu $server)
  ok=bad; [ "$(sum /tmp/got)" = "$want" ] && ok=ok
  path=$(grep 'FTP transfer ended' /tmp/$server.log | tail -1 | grep -o 'tls="[a-z-]*"')
  echo "RESULT server=$server suite=$name op=RETR rc=$rc sha=$ok cpu=$((c1 - c0)) $path w=$w err=$(head -c 200 /tmp/curl.err | tr '\n' ' ')"
  rm -f /tmp/got
  c0=$(cpu $server)
  w=$(curl -sS -k --ssl-reqd "$@" -T /srv/pub/$file -w '%{size_upload} %{time_pretransfer} %{time_total}' ftp://anonymous:x@127.0.0.1:$port/upload/$server-$name 2>/tmp/curl.err)
  rc=$?; c1=$(cpu $server)
  ok=bad; [ "$(sum /srv/pub/upload/$server-$name)" = "$want" ] && ok=ok
  path=$(grep 'FTP transfer ended' /tmp/$server.log | tail -1 | grep -o 'tls="[a-z-]*"')
  echo "RESULT server=$server suite=$name op=STOR rc=$rc sha=$ok cpu=$((c1 - c0)) $path w=$w err=$(head -c 200 /tmp/curl.err | tr '\n' ' ')"
  rm -f /srv/pub/upload/$server-$name
}
stop() { eval p=\$PID_$1; kill $p; wait $p 2>/dev/null; grep -E 'FTPS data|stays in user space|refused|panic|ERROR|WARN' /tmp/$1.log | sed 's/^/LOG /'; }

start kernel 2121
start user 2122
measure kernel 2121 tls13-aes128 small.bin --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
measure kernel 2121 tls13-aes256 small.bin --tlsv1.3 --tls13-ciphers TLS_AES_256_GCM_SHA384
measure kernel 2121 tls13-chacha small.bin --tlsv1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256
measure kernel 2121 tls12-aes128 small.bin --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256
measure kernel 2121 tls12-aes256 small.bin --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES256-GCM-SHA384
measure kernel 2121 tls12-chacha small.bin --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-CHACHA20-POLY1305
# TYPE A both ways and a listing on the kernel path.
check() { echo "CHECK name=$1 ok=$2 $(grep 'FTP transfer ended' /tmp/kernel.log | tail -1 | grep -o 'tls="[a-z-]*"')"; }
seq 1 5000 | sed 's/$/ line/' > /srv/pub/text.txt
K="-sS -k --ssl-reqd"
curl $K --crlf -B -T /srv/pub/text.txt ftp://anonymous:x@127.0.0.1:2121/upload/text.txt
cmp -s /srv/pub/text.txt /srv/pub/upload/text.txt && check ascii-stor ok || check ascii-stor bad
curl $K -B -o /tmp/text.crlf ftp://anonymous:x@127.0.0.1:2121/text.txt
unix2dos < /srv/pub/text.txt > /tmp/text.want
# curl may turn the CRLF back into LF (its line-end conversion); either is the text whole.
{ cmp -s /tmp/text.crlf /tmp/text.want || cmp -s /tmp/text.crlf /srv/pub/text.txt; } && check ascii-retr ok || check ascii-retr bad
curl $K ftp://anonymous:x@127.0.0.1:2121/ | grep -q big.bin && check list ok || check list bad
FERRY_GUEST_CLIENT=2121 /bin/ktls_guest --exact guest_client --nocapture --test-threads 1 2>&1 | grep -o 'BAD case=.*'
# The two paths take turns, @ROUNDS@ rounds: the host's load changes the guest's speed.
for round in $(seq @ROUNDS@); do
  measure kernel 2121 big big.bin --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
  measure user 2122 big big.bin --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
done
stop kernel
stop user
echo "FERRY-GUEST-DONE"
poweroff -f
"#;

fn config(ktls: &str) -> String {
    format!(
        r#"user = "ferry"
[ftp]
listen = ["127.0.0.1:21"]
# No port-20 binder process: active mode is not used here.
active_source_port = 0
[ftp.anonymous]
writable = true
[ftp.limits]
data_timeout_secs = 60
[ftp.tls]
enabled = true
certificate = "/etc/ferry/cert.pem"
private_key = "/etc/ferry/key.pem"
ktls = "{ktls}"
[tftp]
enabled = false
"#
    )
}

/// Builds the initramfs: busybox, ferry, curl and their libraries, the modules, the init.
fn initramfs(kernel: &Kernel, ferry: &Path, mb: u64) -> Result<Vec<u8>, String> {
    let which = |name: &str| -> Result<PathBuf, String> {
        run(Command::new("sh").args(["-c", &format!("command -v {name}")]))
            .map(|p| PathBuf::from(p.trim()))
            .map_err(|_| format!("{name} not found on this machine"))
    };
    let (busybox, curl) = (which("busybox")?, which("curl")?);
    let mut cpio = Cpio::default();
    cpio.dir("dev");
    // The kernel opens /dev/console before /init runs; without it init has no output.
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    let init = INIT.replace("@MB@", &mb.to_string()).replace("@ROUNDS@", &ROUNDS.to_string());
    cpio.file("init", 0o755, init.as_bytes());
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    cpio.file("bin/busybox", 0o755, &read(&busybox)?);
    cpio.file("bin/ferry", 0o755, &stripped(ferry)?);
    cpio.file("bin/curl", 0o755, &read(&curl)?);
    // This test binary: `guest_client` runs in the guest.
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    cpio.file("bin/ktls_guest", 0o755, &stripped(&me)?);
    let mut libs: Vec<PathBuf> =
        [busybox.as_path(), ferry, curl.as_path(), me.as_path()].iter().flat_map(|b| libraries(b)).collect();
    libs.sort();
    libs.dedup();
    for lib in libs {
        cpio.file(&lib.to_string_lossy(), 0o755, &read(&lib)?);
    }
    let modules = guest_modules(kernel);
    let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    cpio.file("modules/order", 0o644, names.join("\n").as_bytes());
    for (name, bytes) in &modules {
        cpio.file(&format!("modules/{name}.ko"), 0o644, bytes);
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    cpio.file("etc/ferry/cert.pem", 0o644, cert.pem().as_bytes());
    cpio.file("etc/ferry/key.pem", 0o644, key.serialize_pem().as_bytes());
    cpio.file("etc/ferry/kernel.toml", 0o644, config("auto").as_bytes());
    cpio.file("etc/ferry/user.toml", 0o644, config("off").as_bytes());
    cpio.file("etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\nferry:x:100:100:ferry:/:/bin/false\n");
    cpio.file("etc/group", 0o644, b"root:x:0:\nferry:x:100:\n");
    Ok(cpio.finish())
}

/// QEMU, killed when dropped.
struct Guest {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guest {
    fn boot(kernel: &Kernel, initrd: &Path, kvm: bool) -> Result<Guest, String> {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-m", "1536", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"]);
        if kvm {
            cmd.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            // AES-NI, PCLMUL and AVX2 for both the kernel's and aws-lc's code paths.
            cmd.args(["-accel", "tcg", "-cpu", "max"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let console = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as _),
        ]
        .into_iter()
        .flatten()
        {
            let console = Arc::clone(&console);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut c = console.lock().unwrap();
                    c.push_str(line.trim_end_matches('\r'));
                    c.push('\n');
                }
            });
        }
        Ok(Guest { child, console })
    }

    fn text(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits until the console shows `marker`; false when QEMU exited or time ran out.
    fn wait_for(&mut self, marker: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.text().contains(marker) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(200));
                return self.text().contains(marker);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

fn kvm_usable() -> bool {
    match std::env::var("FERRY_GUEST_ACCEL").as_deref() {
        Ok("tcg") => false,
        Ok("kvm") => true,
        _ => std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
    }
}

/// One RESULT line's fields.
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split(' ').filter_map(|f| f.split_once('=')).collect()
}

/// (MB/s of the data phase, server CPU seconds per GB) of a RESULT line.
fn rates(line: &str) -> (f64, f64) {
    let w: Vec<f64> =
        line.split("w=").nth(1).unwrap_or("").split(' ').take(3).filter_map(|x| x.parse().ok()).collect();
    let cpu: f64 = fields(line).get("cpu").and_then(|c| c.parse().ok()).unwrap_or(0.0);
    if w.len() < 3 {
        return (0.0, 0.0);
    }
    let (bytes, secs) = (w[0], (w[2] - w[1]).max(1e-6));
    (bytes / secs / 1e6, cpu / 100.0 / (bytes / 1e9))
}

#[test]
fn ftps_over_kernel_tls_in_a_debian_guest() {
    let started = Instant::now();
    if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
        return skipped("qemu-system-x86_64 not installed (Debian package qemu-system-x86)");
    }
    for tool in ["busybox", "curl", "ldd"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return skipped(&format!("{tool} not installed"));
        }
    }
    let kernel = match kernel() {
        Ok(k) => k,
        Err(why) => return skipped(&format!("no Debian kernel package: {why}")),
    };
    let ferry = std::env::var("FERRY_GUEST_FERRY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ferry").into());
    let mb: u64 = std::env::var("FERRY_GUEST_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let work = tempfile::tempdir().unwrap();
    let initrd = work.path().join("initrd.cpio");
    let image = initramfs(&kernel, &ferry, mb).expect("initramfs");
    std::fs::File::create(&initrd).unwrap().write_all(&image).unwrap();
    eprintln!(
        "guest: kernel {} , initramfs {} MiB, ferry {}",
        kernel.release,
        image.len() >> 20,
        ferry.display()
    );

    let mut guest = None;
    if kvm_usable() {
        let mut g = Guest::boot(&kernel, &initrd, true).expect("qemu");
        if g.wait_for("FERRY-GUEST-UP", KVM_BOOT) {
            guest = Some(("kvm", g));
        } else {
            eprintln!("guest: KVM did not boot (falling back to TCG):\n{}", g.text());
        }
    }
    let (accel, mut guest) = match guest {
        Some(g) => g,
        None => ("tcg", Guest::boot(&kernel, &initrd, false).expect("qemu")),
    };
    let left = GUEST_BUDGET.saturating_sub(started.elapsed());
    let done = guest.wait_for("FERRY-GUEST-DONE", left);
    let console = guest.text();
    drop(guest);
    // Kept for a look at what the guest did (insmod, ferry's log lines, curl's numbers).
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ktls_guest_console.txt");
    let _ = std::fs::write(&saved, &console);
    eprintln!("guest console: {}", saved.display());
    assert!(done, "the guest did not finish within {GUEST_BUDGET:?} ({accel}):\n{console}");
    assert!(console.contains("GUEST tls module loaded"), "the tls module did not load:\n{console}");
    let log_start = console.lines().find(|l| l.contains("FTPS data:") && l.starts_with("LOG")).unwrap_or("");
    assert!(log_start.contains("path=\"kernel\""), "the kernel server did not choose kernel TLS:\n{console}");

    let checks: Vec<&str> = console.lines().filter(|l| l.starts_with("CHECK ")).collect();
    assert_eq!(checks.len(), 3, "TYPE A both ways and a listing:\n{console}");
    for line in &checks {
        let f = fields(line);
        assert_eq!((f["ok"], f.get("tls").copied()), ("ok", Some("\"kernel\"")), "{line}\n{console}");
    }
    let bad: Vec<&str> = console.lines().filter(|l| l.starts_with("BAD ")).collect();
    assert_eq!(bad.len(), BAD_CASES.len(), "every broken upload reported:\n{console}");
    for line in &bad {
        let f = fields(line);
        let want: &[&str] = if f["case"] == "clean" { &["226"] } else { &["426", "451"] };
        assert!(want.contains(&f["reply"]), "{line}\n{console}");
        assert_eq!(f["noop"], "200", "the control connection must stay usable: {line}");
    }
    assert!(!console.contains("panic"), "{console}");

    let results: Vec<&str> = console.lines().filter(|l| l.starts_with("RESULT ")).collect();
    assert_eq!(results.len(), 12 + 4 * ROUNDS, "every transfer reported:\n{console}");
    for line in &results {
        let f = fields(line);
        assert_eq!(f["rc"], "0", "curl failed: {line}\n{console}");
        assert_eq!(f["sha"], "ok", "bytes differ: {line}");
        let want = if f["server"] == "kernel" { "\"kernel\"" } else { "\"user-space\"" };
        assert_eq!(f.get("tls").copied(), Some(want), "wrong TLS path: {line}\n{console}");
    }
    let mut report =
        format!("kernel TLS guest ({accel}, kernel {}, {mb} MiB, {}):\n", kernel.release, ferry.display());
    for (server, op) in [("kernel", "RETR"), ("user", "RETR"), ("kernel", "STOR"), ("user", "STOR")] {
        let runs = results.iter().filter(|l| {
            let f = fields(l);
            f["suite"] == "big" && f["server"] == server && f["op"] == op
        });
        let (mut mbs, mut cpu): (Vec<f64>, Vec<f64>) = runs.map(|l| rates(l)).unzip();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (m, c) = (median(&mut mbs), median(&mut cpu));
        report.push_str(&format!(
            "  {server:>6} {op} {m:>7.1} MB/s  server CPU {c:>6.2} s/GB  (median of {ROUNDS}; MB/s {mbs:.1?})\n"
        ));
    }
    eprintln!("{report}");
    println!("{report}");
    assert!(started.elapsed() < Duration::from_secs(300), "took {:?}", started.elapsed());
}

/// Uploads the in-guest client makes: a clean one (226), then the broken ones.
const BAD_CASES: [&str; 4] = ["clean", "keyupdate", "corrupt", "cut"];

/// Runs in the guest only (`FERRY_GUEST_CLIENT` names the kernel-path server's port): for each
/// of [`BAD_CASES`] an FTPS upload over TLS 1.3 that breaks the TLS stream after 1 MiB, the
/// reply it got and whether the control connection still answers, one `BAD` line each.
#[test]
fn guest_client() {
    let Ok(port) = std::env::var("FERRY_GUEST_CLIENT") else { return };
    let port: u16 = port.parse().unwrap();
    for case in BAD_CASES {
        let line = match broken_upload(port, case) {
            Ok((reply, noop)) => format!("BAD case={case} reply={reply} noop={noop}"),
            Err(e) => format!("BAD case={case} reply=error noop=error error={}", e.replace(' ', "_")),
        };
        println!("{line}");
    }
}

mod client {
    //! A minimal blocking FTPS client on rustls, for the guest.
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, StreamOwned};
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::time::Duration;

    pub type Control = StreamOwned<ClientConnection, TcpStream>;

    /// TLS 1.3 with the guest server's certificate as the only root; sessions resume (the
    /// data connection must resume the control session).
    pub fn config() -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file("/etc/ferry/cert.pem").expect("the guest certificate"))
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let c = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(c)
    }

    pub fn connect(port: u16) -> io::Result<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(s)
    }

    pub fn tls(config: &Arc<ClientConfig>) -> ClientConnection {
        ClientConnection::new(Arc::clone(config), ServerName::try_from("127.0.0.1").unwrap()).unwrap()
    }

    /// Reads one reply; returns its last line.
    pub fn reply(r: &mut impl Read) -> io::Result<String> {
        loop {
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while !line.ends_with(b"\n") {
                if r.read(&mut b)? == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                line.push(b[0]);
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return Ok(line);
            }
        }
    }

    pub fn cmd(c: &mut Control, line: &str) -> io::Result<String> {
        c.write_all(format!("{line}\r\n").as_bytes())?;
        c.flush()?;
        reply(c)
    }
}

/// Sends what `tls` has queued on `data`; with `corrupt`, one ciphertext byte of the first
/// record flipped, so its tag no longer matches.
fn send(
    tls: &mut rustls::ClientConnection,
    data: &mut std::net::TcpStream,
    corrupt: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut wire = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut wire)?;
    }
    if corrupt && wire.len() > 40 {
        wire[40] ^= 0x55;
    }
    data.write_all(&wire)
}

/// One upload broken as `case` says; returns the codes of its final reply and of a NOOP after.
fn broken_upload(port: u16, case: &str) -> Result<(String, String), String> {
    use std::io::{Read, Write};
    let e = |e: std::io::Error| e.to_string();
    let config = client::config();
    let mut plain = client::connect(port).map_err(e)?;
    client::reply(&mut plain).map_err(e)?;
    plain.write_all(b"AUTH TLS\r\n").map_err(e)?;
    let auth = client::reply(&mut plain).map_err(e)?;
    if !auth.starts_with("234") {
        return Err(auth);
    }
    let mut control = client::Control::new(client::tls(&config), plain);
    let login = [
        ("USER anonymous", "331"),
        ("PASS x", "230"),
        ("PBSZ 0", "200"),
        ("PROT P", "200"),
        ("TYPE I", "200"),
    ];
    for (line, want) in login {
        let got = client::cmd(&mut control, line).map_err(e)?;
        if !got.starts_with(want) {
            return Err(format!("{line}: {got}"));
        }
    }
    let epsv = client::cmd(&mut control, "EPSV").map_err(e)?;
    let data_port: u16 = epsv.split('|').nth(3).and_then(|p| p.parse().ok()).ok_or(epsv.clone())?;
    let mut data = client::connect(data_port).map_err(e)?;
    let stor = client::cmd(&mut control, &format!("STOR upload/bad-{case}")).map_err(e)?;
    if !stor.starts_with("150") {
        return Err(stor);
    }
    let mut tls = client::tls(&config);
    while tls.is_handshaking() {
        tls.complete_io(&mut data).map_err(e)?;
    }
    let chunk = vec![0x5au8; 64 * 1024];
    for _ in 0..16 {
        tls.writer().write_all(&chunk).map_err(e)?;
        send(&mut tls, &mut data, false).map_err(e)?;
    }
    // From here the server may have closed the data connection already: send errors are
    // part of the case.
    match case {
        "keyupdate" => {
            tls.refresh_traffic_keys().map_err(|x| x.to_string())?;
            let _ = send(&mut tls, &mut data, false);
            tls.writer().write_all(&chunk[..16 * 1024]).map_err(e)?;
            let _ = send(&mut tls, &mut data, false);
            tls.send_close_notify();
            let _ = send(&mut tls, &mut data, false);
        }
        "corrupt" => {
            tls.writer().write_all(&chunk).map_err(e)?;
            let _ = send(&mut tls, &mut data, true);
            tls.send_close_notify();
            let _ = send(&mut tls, &mut data, false);
        }
        "cut" => {}
        _ => {
            tls.send_close_notify();
            send(&mut tls, &mut data, false).map_err(e)?;
        }
    }
    let _ = data.shutdown(std::net::Shutdown::Write);
    // Drained until the server's end (its close_notify, its FIN).
    let mut sink = [0u8; 4096];
    while matches!(data.read(&mut sink), Ok(n) if n > 0) {}
    let end = client::reply(&mut control).map_err(e)?;
    let noop = client::cmd(&mut control, "NOOP").map_err(e)?;
    let _ = client::cmd(&mut control, "QUIT");
    Ok((end[..3].to_string(), noop[..3].to_string()))
}
