//! Real boot firmware against Ferry: UEFI PXE (OVMF's EDK2), iPXE and U-Boot in QEMU on a
//! network namespace with DHCP from dnsmasq, each proving the bytes it downloaded.

// Every guest, server and namespace is killed or removed on every exit path (guards), each
// guest has a deadline, and the cases run one at a time: under TCG on two shared cores,
// guests side by side would only push each other past their deadlines. A case that cannot
// run here (not root, no QEMU, firmware or dnsmasq) says SKIPPED and why. Times go to the
// test output (`--nocapture`), with tftpd-hpa's beside Ferry's where that costs little.

mod common;

use common::netns::{self, Netns};
use common::{ferry_bin, served_dir, strip_ansi, Text};
use rand::Rng;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The server's address on the test bridge; it exists only inside the test's namespace.
const SERVER: &str = "10.77.0.1";
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Debian's iPXE EFI build that uses the firmware's own network driver (SNP): small (170 KB),
/// and it runs only if EDK2 loaded it intact.
const SNPONLY: &str = "/usr/lib/ipxe/snponly.efi";
/// iPXE as QEMU's option ROM for a legacy BIOS (SeaBIOS) guest: virtio-net-pci's default
/// ROM, from Debian's ipxe-qemu. Left as the default: QEMU 7.2 given the same file (or
/// pxe-virtio.rom) as `romfile=` never ran it here.
const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
const UBOOT_ARM64: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// One case at a time (see the file's doc); a failed case must not block the others.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when `case` can run; otherwise prints SKIPPED with the reason.
fn can_run(case: &str, needs: &[&str]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|n| if n.starts_with('/') { !Path::new(n).exists() } else { !on_path(n) })
        .collect();
    let reason = if !netns::available() {
        "network namespaces need root and iproute2".to_string()
    } else if !Path::new("/dev/net/tun").exists() {
        "no /dev/net/tun for the guests' tap devices".to_string()
    } else if !missing.is_empty() {
        format!("missing {} (tests/run-all.sh installs them)", missing.join(", "))
    } else {
        return true;
    };
    eprintln!("SKIPPED {case}: {reason}");
    false
}

fn on_path(program: &str) -> bool {
    program_path(program).is_some()
}

/// Where `program` is: on PATH, or in /usr/sbin (dnsmasq, in.tftpd) when PATH lacks it.
fn program_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Kills `cmd`'s process when the test thread that started it dies, even by SIGKILL, where
/// no guard runs. (Ferry loses this when it drops privileges; its guard and the
/// namespace's removal still end it.)
fn die_with_test(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// `-accel kvm` when KVM really runs a guest here, else `tcg`. `/dev/kvm` may exist and
/// still fault every guest ("KVM internal error"): a short OVMF boot decides, and fails
/// fast when it faults.
fn x86_accel() -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| {
        if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
            eprintln!("accelerator: tcg (no usable /dev/kvm)");
            return "tcg";
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "kvm", "-machine", "q35", "-m", "128", "-bios", OVMF, "-net", "none"]);
        cmd.args(["-nographic", "-nodefaults", "-monitor", "none", "-serial", "stdio"]);
        let mut vm = Vm::spawn("kvm-probe", cmd, false);
        let deadline = Instant::now() + Duration::from_secs(30);
        let accel = loop {
            let text = vm.text();
            if text.contains("BdsDxe") {
                break "kvm";
            }
            let exited = vm.child.try_wait().ok().flatten().is_some();
            if text.contains("KVM internal error")
                || text.contains("kvm")
                || exited
                || Instant::now() > deadline
            {
                break "tcg";
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!("accelerator: {accel} (KVM probe said: {:?})", first_line_with(&vm.text(), "KVM"));
        accel
    })
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or("")
}

/// A namespace with a bridge at [`SERVER`] and `taps` tap devices on it, one per guest, and
/// a scratch directory for configs and logs.
struct Lab {
    work: tempfile::TempDir,
    ns: Netns,
}

impl Lab {
    fn new(taps: usize) -> Lab {
        let ns = Netns::new("fw");
        ns.run(&format!(
            "ip link add br0 type bridge && ip addr add {SERVER}/24 brd + dev br0 && ip link set br0 up"
        ));
        for i in 0..taps {
            ns.run(&format!("ip tuntap add tap{i} mode tap && ip link set tap{i} master br0 up"));
        }
        Lab { work: tempfile::tempdir().unwrap(), ns }
    }

    /// dnsmasq as DHCP server only (`--port=0`: no DNS), on the bridge alone. iPXE says so
    /// in its user class and gets the script; other clients get `first_boot`.
    fn dnsmasq(&self, first_boot: &str) -> Daemon {
        let mut cmd = self.ns.command(program_path("dnsmasq").unwrap().to_str().unwrap());
        cmd.args(["--keep-in-foreground", "--log-facility=-", "--log-dhcp", "--conf-file=/dev/null"]);
        cmd.args(["--port=0", "--interface=br0", "--bind-interfaces", "--leasefile-ro", "--pid-file="]);
        cmd.arg("--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h");
        cmd.arg("--dhcp-userclass=set:ipxe,iPXE");
        cmd.arg(format!("--dhcp-boot=tag:ipxe,boot.ipxe,,{SERVER}"));
        cmd.arg(format!("--dhcp-boot=tag:!ipxe,{first_boot},,{SERVER}"));
        let d = Daemon::spawn("dnsmasq", cmd, self.work.path());
        d.wait_log("DHCP, sockets bound exclusively to interface br0");
        d
    }

    /// Ferry with its normal configuration file: TFTP on [`SERVER`]:69, metrics and the
    /// xferlog on, FTP off.
    fn ferry(&self, root: &Path) -> Ferry {
        let xferlog = self.work.path().join("xferlog");
        let config = self.work.path().join("ferry.toml");
        let toml = format!(
            "root = {root:?}\nworkers = 2\nuser = \"nobody\"\n\n[log]\nlevel = \"info\"\n\n\
             [metrics]\nenabled = true\nlisten = \"{SERVER}:9121\"\n\n\
             [xferlog]\nenabled = true\npath = {xferlog:?}\n\n[ftp]\nenabled = false\n\n\
             [tftp]\nlisten = [\"{SERVER}:69\"]\n"
        );
        std::fs::write(&config, toml).unwrap();
        // The binary cargo built for the tests, or another one (a release build, for times)
        // named by FIRMWARE_TEST_FERRY_BIN (not FERRY_*: Ferry refuses unknown FERRY_ keys).
        let bin = std::env::var("FIRMWARE_TEST_FERRY_BIN").unwrap_or_else(|_| ferry_bin().to_string());
        // Times below are this binary's: a debug build is several times slower per block.
        eprintln!("ferry binary: {bin}");
        let mut cmd = self.ns.command(&bin);
        cmd.arg("--config").arg(&config).env_remove("RUST_LOG").env_remove("FERRY_CONFIG");
        let daemon = Daemon::spawn("ferry", cmd, self.work.path());
        daemon.wait_log("ferry serving");
        Ferry { daemon, xferlog, ns: self.ns.name.clone() }
    }

    /// tftpd-hpa on the same address and root, for a time comparison.
    fn tftpd_hpa(&self, root: &Path) -> Daemon {
        // A stopped Ferry's io_uring teardown holds port 69 a moment after it exits, and
        // in.tftpd gives up at once when it cannot bind: start it again until it listens.
        let mut last = String::new();
        for _ in 0..20 {
            let mut cmd = self.ns.command(program_path("in.tftpd").unwrap().to_str().unwrap());
            cmd.args(["--foreground", "--listen", "--address", &format!("{SERVER}:69"), "--secure"]);
            cmd.args(["--user", "nobody"]).arg(root);
            let mut d = Daemon::spawn("in.tftpd", cmd, self.work.path());
            let listening = common::poll(Duration::from_secs(1), || {
                let out = self.ns.try_run("ss -Hlunp sport = :69");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains("in.tftpd") {
                    Ok(())
                } else {
                    Err(text)
                }
            });
            if listening.is_ok() && d.child.try_wait().ok().flatten().is_none() {
                return d;
            }
            last = format!("{:?}; log: {}", listening.err(), d.log());
        }
        panic!("in.tftpd never listened on {SERVER}:69: {last}");
    }

    /// A guest on tap `tap`, its serial console on stdio. `-nographic`, not `-display none`:
    /// only then does QEMU ask SeaBIOS (and so iPXE's BIOS ROM) to write to the serial port.
    fn vm(&self, name: &str, qemu: &str, tap: usize, args: &[&str], stdin: bool) -> Vm {
        let mut cmd = self.ns.command(qemu);
        cmd.args(["-nographic", "-nodefaults", "-monitor", "none", "-serial", "stdio", "-no-reboot"]);
        cmd.args(["-netdev", &format!("tap,id=n0,ifname=tap{tap},script=no,downscript=no")]);
        cmd.args(args);
        Vm::spawn(name, cmd, stdin)
    }
}

/// A background server in the namespace, its output in a file; killed on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file);
        let child = die_with_test(&mut cmd).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn wait_log(&self, needle: &str) {
        common::eventually(Duration::from_secs(15), &format!("{needle:?} from {}", self.name), || {
            common::check(Text(self.log()), |l| l.0.contains(needle))
        });
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Ferry under test, with what it reports: its log, xferlog and metrics.
struct Ferry {
    daemon: Daemon,
    xferlog: PathBuf,
    ns: String,
}

impl Ferry {
    fn log(&self) -> String {
        self.daemon.log()
    }

    fn xferlog(&self) -> String {
        std::fs::read_to_string(&self.xferlog).unwrap_or_default()
    }

    /// Ferry's log lines about `file` that contain `what`.
    fn lines(&self, what: &str, file: &str) -> Vec<String> {
        let file = format!("file={file} ");
        self.log().lines().filter(|l| l.contains(what) && l.contains(&file)).map(String::from).collect()
    }

    /// The `{worker="all"}` value of a counter, read from /metrics inside the namespace.
    fn metric(&self, name: &str) -> u64 {
        let path = format!("/run/netns/{}", self.ns);
        let body = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut s = std::net::TcpStream::connect((SERVER, 9121)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: ferry\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        })
        .join()
        .unwrap();
        let key = format!("{name}{{worker=\"all\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /metrics:\n{body}"))
    }

    /// Asserts the xferlog has `count` complete downloads of `file` with all its `bytes`,
    /// and no incomplete line at all (a size probe is not a failed transfer).
    fn assert_xferlog(&self, file: &str, bytes: usize, count: usize) {
        let xferlog = self.xferlog();
        let needle = format!(" {bytes} /{file} b _ o a anonymous tftp 0 * c");
        assert_eq!(xferlog.matches(&needle).count(), count, "{needle:?} in the xferlog:\n{xferlog}");
        assert!(!xferlog.lines().any(|l| l.ends_with(" i")), "an incomplete transfer:\n{xferlog}");
    }
}

/// A QEMU guest whose console (stdout and stderr) is gathered with the time each piece
/// arrived; killed on drop.
struct Vm {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<Mutex<Console>>,
    started: Instant,
}

#[derive(Default)]
struct Console {
    bytes: Vec<u8>,
    /// (end offset in `bytes`, arrival) for each read.
    arrivals: Vec<(usize, Instant)>,
}

impl Vm {
    fn spawn(name: &str, mut cmd: Command, stdin: bool) -> Vm {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = die_with_test(&mut cmd).spawn().unwrap_or_else(|e| panic!("cannot start QEMU: {e}"));
        let console = Arc::new(Mutex::new(Console::default()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for mut pipe in [out, err] {
            let console = console.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    let mut c = console.lock().unwrap();
                    c.bytes.extend_from_slice(&buf[..n]);
                    let end = c.bytes.len();
                    c.arrivals.push((end, Instant::now()));
                }
            });
        }
        let stdin = child.stdin.take();
        Vm { name: name.to_string(), child, stdin, console, started: Instant::now() }
    }

    /// The console so far, without colour sequences and carriage returns.
    fn text(&self) -> String {
        let c = self.console.lock().unwrap();
        strip_ansi(&String::from_utf8_lossy(&c.bytes)).replace('\r', "")
    }

    /// Waits until `needle` appears on the console after byte `after`; its end offset and
    /// when the bytes that completed it arrived. Err: the console's tail, for the message.
    fn wait_for(&mut self, needle: &str, after: usize, within: Duration) -> Result<(usize, Instant), String> {
        let deadline = Instant::now() + within;
        loop {
            {
                let c = self.console.lock().unwrap();
                let hay = &c.bytes[after.min(c.bytes.len())..];
                if let Some(at) = hay.windows(needle.len()).position(|w| w == needle.as_bytes()) {
                    let end = after + at + needle.len();
                    let when = c.arrivals.iter().find(|(e, _)| *e >= end).map_or_else(Instant::now, |a| a.1);
                    return Ok((end, when));
                }
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let text = self.text();
                let tail: String =
                    text.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
                let why = exited.map_or(format!("not within {within:?}"), |s| format!("QEMU exited: {s}"));
                return Err(format!("{}: waited for {needle:?}: {why}; console tail:\n{tail}", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`Vm::wait_for`], panicking with the console and `context` (server logs).
    fn expect(
        &mut self,
        needle: &str,
        after: usize,
        within: Duration,
        context: &dyn Fn() -> String,
    ) -> (usize, Instant) {
        self.wait_for(needle, after, within)
            .unwrap_or_else(|e| panic!("{e}\n--- server side:\n{}", context()))
    }

    /// Types `line` and Enter on the serial console.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("a guest started with stdin");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The iPXE scripts: `boot.ipxe` prints a marker, fetches `payload.ipxe` and shows its size
/// (imgstat), then runs it. Debian's iPXE has no digest command, so the payload proves its
/// bytes by being executed: each line echoes a random token, and the test compares every
/// echoed line with what it wrote. Returns the payload's length and its expected lines.
fn write_ipxe_scripts(root: &Path, lines: usize) -> (usize, Vec<String>) {
    std::fs::write(
        root.join("boot.ipxe"),
        "#!ipxe\necho FERRY-SCRIPT-OK\nimgfetch payload.ipxe\nimgstat\nchain payload.ipxe\n",
    )
    .unwrap();
    let mut rng = rand::thread_rng();
    let expected: Vec<String> = (0..lines)
        .map(|i| {
            let token: String =
                (0..48).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap()).collect();
            format!("L{i:04} {token}")
        })
        .collect();
    let mut script = String::from("#!ipxe\n");
    for l in &expected {
        script.push_str(&format!("echo {l}\n"));
    }
    script.push_str("echo FERRY-PAYLOAD-END\n");
    std::fs::write(root.join("payload.ipxe"), &script).unwrap();
    (script.len(), expected)
}

/// Asserts the payload ran whole: imgstat saw its exact size and every line was echoed, in
/// order, nothing else in between.
fn assert_payload_ran(vm: &Vm, len: usize, expected: &[String]) {
    let text = vm.text();
    let size = format!("payload.ipxe : {len} bytes");
    assert!(text.contains(&size), "{}: no {size:?} (imgstat) on the console:\n{text}", vm.name);
    let echoed: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() > 6 && l.starts_with('L') && l[1..5].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(echoed == expected, "{}: echoed payload lines differ from the file:\n{text}", vm.name);
}

/// OVMF PXE-boots iPXE's snponly.efi on tap `tap` (EDK2's own virtio-net driver: no option
/// ROM, so the TFTP client is EDK2's); Ferry's `root` must hold the scripts.
fn uefi_guest(lab: &Lab, tap: usize) -> Vm {
    let accel = x86_accel();
    let mac = format!("mac=52:54:00:12:34:{:02x}", 0x10 + tap);
    let nic = format!("virtio-net-pci,netdev=n0,romfile=,{mac}");
    let args = ["-accel", accel, "-machine", "q35", "-m", "256", "-bios", OVMF, "-device", &nic];
    lab.vm(&format!("uefi-guest-{tap}"), "qemu-system-x86_64", tap, &args, false)
}

/// What a UEFI boot took, as the guest's console shows it.
struct UefiBoot {
    /// EDK2's "Downloading NBP file" to "downloaded successfully": the TFTP download.
    nbp: Duration,
    /// From QEMU's start to the payload's last line.
    total: Duration,
}

/// Follows one UEFI guest through EDK2's download, iPXE's script and the payload, all
/// before `deadline`.
fn follow_uefi(vm: &mut Vm, deadline: Instant, context: &dyn Fn() -> String) -> UefiBoot {
    let size = std::fs::metadata(SNPONLY).unwrap().len();
    let left = || deadline.saturating_duration_since(Instant::now());
    let (at, _) = vm.expect(&format!("NBP filesize is {size} Bytes"), 0, left(), context);
    let (at, began) = vm.expect("Downloading NBP file", at, left(), context);
    let (at, done) = vm.expect("NBP file downloaded successfully", at, left(), context);
    let (at, _) = vm.expect("iPXE initialising devices", at, left(), context);
    let (at, _) = vm.expect("FERRY-SCRIPT-OK", at, left(), context);
    let (_, end) = vm.expect("FERRY-PAYLOAD-END", at, left(), context);
    UefiBoot { nbp: done - began, total: end - vm.started }
}

/// `duration_ms` of a Ferry log line.
fn duration_ms(line: &str) -> &str {
    line.split("duration_ms=").nth(1).and_then(|v| v.split(' ').next()).unwrap_or("?")
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[test]
fn uefi_pxe_edk2_probes_then_downloads_with_windowsize_4_and_boots_ipxe() {
    let case = "UEFI PXE (OVMF)";
    if !can_run(case, &["qemu-system-x86_64", "dnsmasq", OVMF, SNPONLY]) {
        return;
    }
    let _one = one_at_a_time();
    let root = served_dir();
    std::fs::copy(SNPONLY, root.path().join("snponly.efi")).unwrap();
    let (len, expected) = write_ipxe_scripts(root.path(), 150);
    let lab = Lab::new(1);
    let _dhcp = lab.dnsmasq("snponly.efi");
    let ferry = lab.ferry(root.path());
    let context = || format!("ferry:\n{}\nxferlog:\n{}", ferry.log(), ferry.xferlog());

    let mut vm = uefi_guest(&lab, 0);
    let boot = follow_uefi(&mut vm, Instant::now() + Duration::from_secs(300), &context);
    assert_payload_ran(&vm, len, &expected);
    drop(vm);

    // EDK2 asks for the size first (OACK, then ERROR 8), then again from a new port: one
    // probe, logged and counted as such, and one complete download in window 4.
    let efi_len = std::fs::metadata(SNPONLY).unwrap().len() as usize;
    let probes = ferry.lines("TFTP options probe", "snponly.efi");
    assert!(!probes.is_empty(), "no size probe logged:\n{}", context());
    assert_eq!(ferry.metric("ferry_tftp_option_probes_total"), probes.len() as u64, "{}", context());
    let ended = ferry.lines("TFTP transfer ended", "snponly.efi");
    assert_eq!(ended.len(), 1, "one download of snponly.efi:\n{}", context());
    assert!(ended[0].contains("blksize=1468 windowsize=4"), "EDK2's window 4 granted: {}", ended[0]);
    assert!(ended[0].contains(&format!("bytes={efi_len} ")), "{}", ended[0]);
    // iPXE, started by what EDK2 downloaded: lock-step with 1432-byte blocks.
    for script in ["boot.ipxe", "payload.ipxe"] {
        let ended = ferry.lines("TFTP transfer ended", script);
        assert!(ended.len() == 1 && ended[0].contains("blksize=1432 windowsize=1"), "{script}: {ended:?}");
    }
    ferry.assert_xferlog("snponly.efi", efi_len, 1);
    ferry.assert_xferlog("payload.ipxe", len, 1);
    let ferry_ms = duration_ms(&ended[0]).to_string();
    ferry.daemon.stop();

    // The same boot from tftpd-hpa (no windowsize: EDK2 falls back to lock-step), for time only.
    let hpa = on_path("in.tftpd").then(|| {
        let _hpa = lab.tftpd_hpa(root.path());
        let mut vm = uefi_guest(&lab, 0);
        follow_uefi(&mut vm, Instant::now() + Duration::from_secs(300), &|| "tftpd-hpa".to_string())
    });
    eprintln!(
        "TIME {case} [{}]: Ferry: NBP ({efi_len} bytes) {} as EDK2 saw it ({ferry_ms} ms in Ferry's log), \
         boot to payload end {}; tftpd-hpa: {}",
        x86_accel(),
        secs(boot.nbp),
        secs(boot.total),
        hpa.map_or("not installed".to_string(), |b| format!(
            "NBP {}, boot to payload end {}",
            secs(b.nbp),
            secs(b.total)
        ))
    );
}

/// A legacy BIOS guest (SeaBIOS) booting QEMU's iPXE ROM on tap `tap`.
fn ipxe_bios_guest(lab: &Lab, tap: usize) -> Vm {
    let nic = format!("virtio-net-pci,netdev=n0,mac=52:54:00:12:35:{:02x}", 0x10 + tap);
    let args = ["-accel", x86_accel(), "-machine", "pc", "-m", "128", "-boot", "n", "-device", &nic];
    lab.vm(&format!("ipxe-guest-{tap}"), "qemu-system-x86_64", tap, &args, false)
}

/// From QEMU's start to the payload's end, and from iPXE's first script request to it.
fn follow_ipxe(vm: &mut Vm, deadline: Instant, context: &dyn Fn() -> String) -> (Duration, Duration) {
    let left = || deadline.saturating_duration_since(Instant::now());
    let (at, _) = vm.expect("iPXE initialising devices", 0, left(), context);
    let (at, asked) = vm.expect("tftp://10.77.0.1/boot.ipxe", at, left(), context);
    let (at, _) = vm.expect("FERRY-SCRIPT-OK", at, left(), context);
    let (_, end) = vm.expect("FERRY-PAYLOAD-END", at, left(), context);
    (end - vm.started, end - asked)
}

#[test]
fn ipxe_rom_fetches_a_script_and_a_payload_lock_step_in_1432_byte_blocks() {
    let case = "iPXE ROM (SeaBIOS)";
    if !can_run(case, &["qemu-system-x86_64", "dnsmasq", IPXE_ROM]) {
        return;
    }
    let _one = one_at_a_time();
    let root = served_dir();
    let (len, expected) = write_ipxe_scripts(root.path(), 300);
    let lab = Lab::new(1);
    let _dhcp = lab.dnsmasq("boot.ipxe");
    let ferry = lab.ferry(root.path());
    let context = || format!("ferry:\n{}\nxferlog:\n{}", ferry.log(), ferry.xferlog());

    let mut vm = ipxe_bios_guest(&lab, 0);
    let (total, scripts) = follow_ipxe(&mut vm, Instant::now() + Duration::from_secs(300), &context);
    assert_payload_ran(&vm, len, &expected);
    drop(vm);
    let mut ms = Vec::new();
    for script in ["boot.ipxe", "payload.ipxe"] {
        let ended = ferry.lines("TFTP transfer ended", script);
        assert!(ended.len() == 1 && ended[0].contains("blksize=1432 windowsize=1"), "{script}: {ended:?}");
        ms.push(duration_ms(&ended[0]).to_string());
    }
    ferry.assert_xferlog("payload.ipxe", len, 1);
    ferry.daemon.stop();

    let hpa = on_path("in.tftpd").then(|| {
        let _hpa = lab.tftpd_hpa(root.path());
        let mut vm = ipxe_bios_guest(&lab, 0);
        follow_ipxe(&mut vm, Instant::now() + Duration::from_secs(300), &|| "tftpd-hpa".to_string())
    });
    eprintln!(
        "TIME {case} [{}]: Ferry: boot to payload end {}, script request to payload end {} \
         (boot.ipxe {} ms, payload.ipxe {len} bytes {} ms in Ferry's log); tftpd-hpa: {}",
        x86_accel(),
        secs(total),
        secs(scripts),
        ms[0],
        ms[1],
        hpa.map_or("not installed".to_string(), |(t, s)| format!(
            "boot to payload end {}, script request to payload end {}",
            secs(t),
            secs(s)
        ))
    );
}

/// The standard CRC-32 (IEEE 802.3, reflected), as U-Boot's `crc32` computes it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Types `line` at U-Boot's prompt and waits for the next prompt; the output and where it
/// ends. A prompt starts a line: `crc32` prints `==> ` inside one.
fn uboot(vm: &mut Vm, at: usize, line: &str, context: &dyn Fn() -> String) -> (String, usize) {
    vm.type_line(line);
    let (end, _) = vm.expect("\n=> ", at, Duration::from_secs(120), context);
    let out = String::from_utf8_lossy(&vm.console.lock().unwrap().bytes[at..end]).replace('\r', "");
    (out, end)
}

/// The CRC and the client's rate from a `tftpboot ...; crc32 ...` output.
fn uboot_crc_and_rate(out: &str) -> (Option<u32>, String) {
    let crc = out.split("==> ").nth(1).and_then(|v| u32::from_str_radix(v.get(..8)?, 16).ok());
    let rate = out.lines().find(|l| l.trim_end().ends_with("/s")).unwrap_or("?").trim().to_string();
    (crc, rate)
}

#[test]
fn uboot_tftpboot_lock_step_and_window_8_crc32_matches() {
    let case = "U-Boot (qemu_arm64)";
    if !can_run(case, &["qemu-system-aarch64", "dnsmasq", UBOOT_ARM64]) {
        return;
    }
    let _one = one_at_a_time();
    let root = served_dir();
    // 1 MiB and a few bytes: 715 blocks of 1468, the last one short.
    let data = common::tftp::random_file(root.path(), "uboot.bin", (1 << 20) + 7);
    let want = crc32(&data);
    let lab = Lab::new(1);
    let _dhcp = lab.dnsmasq("none");
    let ferry = lab.ferry(root.path());
    let context = || format!("ferry:\n{}\nxferlog:\n{}", ferry.log(), ferry.xferlog());

    let nic = "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:12:36:10";
    let args = ["-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a57", "-m", "256", "-bios", UBOOT_ARM64];
    let mut vm = lab.vm("u-boot", "qemu-system-aarch64", 0, &[&args[..], &["-device", nic]].concat(), true);
    let (at, _) = vm.expect("Hit any key to stop autoboot", 0, Duration::from_secs(120), &context);
    vm.type_line("");
    let (at, _) = vm.expect("=> ", at, Duration::from_secs(30), &context);
    let booted = vm.started.elapsed();
    let (out, at) = uboot(&mut vm, at, "setenv autoload no; dhcp; setenv serverip 10.77.0.1", &context);
    assert!(out.contains("DHCP client bound to address"), "U-Boot's DHCP:\n{out}\n{}", context());

    let fetch = "tftpboot ${loadaddr} uboot.bin; crc32 ${loadaddr} ${filesize}";
    let mut rates = Vec::new();
    let mut at = at;
    for window in [1, 8] {
        let (out, end) = uboot(&mut vm, at, &format!("setenv tftpwindowsize {window}; {fetch}"), &context);
        at = end;
        let (crc, rate) = uboot_crc_and_rate(&out);
        assert_eq!(crc, Some(want), "window {window}: U-Boot's CRC of what it loaded:\n{out}\n{}", context());
        assert!(out.contains(&format!("Bytes transferred = {}", data.len())), "{out}");
        rates.push(rate);
    }
    let ended = ferry.lines("TFTP transfer ended", "uboot.bin");
    assert_eq!(ended.len(), 2, "{}", context());
    assert!(ended[0].contains("blksize=1468 windowsize=1"), "U-Boot's default is lock-step: {}", ended[0]);
    assert!(ended[1].contains("blksize=1468 windowsize=8"), "tftpwindowsize 8 granted: {}", ended[1]);
    ferry.assert_xferlog("uboot.bin", data.len(), 2);
    let ms: Vec<String> = ended.iter().map(|l| duration_ms(l).to_string()).collect();
    ferry.daemon.stop();

    // The same lock-step download from tftpd-hpa, in the same guest: no second boot.
    let hpa = if on_path("in.tftpd") {
        let _hpa = lab.tftpd_hpa(root.path());
        let (out, _) =
            uboot(&mut vm, at, &format!("setenv tftpwindowsize 1; {fetch}"), &|| "tftpd-hpa".into());
        let (crc, rate) = uboot_crc_and_rate(&out);
        format!("lock-step {rate}{}", if crc == Some(want) { "" } else { " (CRC differs!)" })
    } else {
        "not installed".to_string()
    };
    eprintln!(
        "TIME {case} [tcg]: boot to prompt {}; Ferry {} bytes: lock-step {} ({} ms in Ferry's log), \
         window 8 {} ({} ms); tftpd-hpa: {hpa}",
        secs(booted),
        data.len(),
        rates[0],
        ms[0],
        rates[1],
        ms[1],
    );
}

#[test]
fn a_storm_of_uefi_guests_boots_at_once_byte_exact() {
    const GUESTS: usize = 4;
    let case = "storm of UEFI guests";
    if !can_run(case, &["qemu-system-x86_64", "dnsmasq", OVMF, SNPONLY]) {
        return;
    }
    let _one = one_at_a_time();
    let root = served_dir();
    std::fs::copy(SNPONLY, root.path().join("snponly.efi")).unwrap();
    let (len, expected) = write_ipxe_scripts(root.path(), 100);
    let lab = Lab::new(GUESTS);
    let _dhcp = lab.dnsmasq("snponly.efi");
    let ferry = lab.ferry(root.path());
    let context = || format!("ferry:\n{}\nxferlog:\n{}", ferry.log(), ferry.xferlog());

    let began = Instant::now();
    let mut vms: Vec<Vm> = (0..GUESTS).map(|i| uefi_guest(&lab, i)).collect();
    let deadline = began + Duration::from_secs(420);
    let boots: Vec<UefiBoot> = vms.iter_mut().map(|vm| follow_uefi(vm, deadline, &context)).collect();
    let all = began.elapsed();
    for vm in &vms {
        assert_payload_ran(vm, len, &expected);
    }
    drop(vms);

    let efi_len = std::fs::metadata(SNPONLY).unwrap().len() as usize;
    ferry.assert_xferlog("snponly.efi", efi_len, GUESTS);
    ferry.assert_xferlog("payload.ipxe", len, GUESTS);
    let probes = ferry.lines("TFTP options probe", "snponly.efi").len();
    assert!(probes >= GUESTS, "a size probe per guest:\n{}", context());
    assert_eq!(ferry.metric("ferry_tftp_option_probes_total"), probes as u64, "{}", context());
    let ended = ferry.lines("TFTP transfer ended", "snponly.efi");
    assert!(ended.iter().all(|l| l.contains("windowsize=4")), "{ended:#?}");
    let nbp: Vec<String> = boots.iter().map(|b| secs(b.nbp)).collect();
    let ms: Vec<&str> = ended.iter().map(|l| duration_ms(l)).collect();
    let slowest = boots.iter().map(|b| b.total).max().unwrap();
    eprintln!(
        "TIME {case} [{}]: {GUESTS} guests, all payloads ended after {} (slowest guest {}); \
         NBP as EDK2 saw it: {}; Ferry's log: {} ms",
        x86_accel(),
        secs(all),
        secs(slowest),
        nbp.join(", "),
        ms.join(", ")
    );
}
