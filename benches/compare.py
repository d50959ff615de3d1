#!/usr/bin/env python3
"""Side-by-side benchmark of Ferry against vsftpd, tftpd-hpa and atftpd on loopback.

Started by benches/compare.sh (which installs the reference servers and builds Ferry).
Each scenario runs against every server in the same run, each server freshly started in
its own cgroup (when one can be made) so its CPU time and memory are accounted cleanly.
Writes benches/results/latest.md and latest.json; see benches/README.md.
"""

import argparse
import json
import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FTP_PORT, TFTP_PORT, IPERF_PORT = 2121, 6969, 5299
PASSIVE = (20000, 29999)  # below the kernel's ephemeral range, so it never collides
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
GiB = 1 << 30

# Per profile: file sizes, client counts and durations. "full" is the table.
# `settle`: wait for a quiet machine before each server (off for the smoke test, which runs
# beside other tests and measures nothing). `stor_count` 1 for the 1 GiB upload: two in a
# row leave about 2 GiB dirty, right at this machine's background-writeback threshold, and
# the second upload then shares the CPUs with the flusher in some runs and not in others.
# `tftp_one_count`: enough 64 MiB transfers for a stable rate (one takes about 60 ms).
# `rounds`: how often the short single-client scenarios run, servers alternating (median).
# `lock_clients`: the lock-step crowd (issue 12's 500-client row); `storm_big` clients fetch
# `tftp_tiny` each at once (the 10,000-client row). `idle_tls`: idle FTPS control sessions.
PROFILES = {
    "full": dict(big=1 << 30, mid=16 * MiB, tftp_big=64 * MiB, tftp_small=MiB, sess_secs=10,
                 big_count=3, mid_clients=256, mid_count=512, stor_count=1, idle=10000, idle_tls=1000,
                 tftp_clients=200, storm=2000, timeout=600, settle=True, tftp_one_count=6, rounds=3,
                 lock_clients=500, storm_big=10000, tftp_tiny=256 << 10),
    "quick": dict(big=128 * MiB, mid=2 * MiB, tftp_big=16 * MiB, tftp_small=256 << 10, sess_secs=3,
                  big_count=2, mid_clients=64, mid_count=128, stor_count=1, idle=1000, idle_tls=300,
                  tftp_clients=40, storm=300, timeout=180, settle=True, tftp_one_count=2, rounds=1,
                  lock_clients=100, storm_big=1000, tftp_tiny=64 << 10),
    "smoke": dict(big=4 * MiB, mid=256 << 10, tftp_big=MiB, tftp_small=64 << 10, sess_secs=1,
                  big_count=1, mid_clients=8, mid_count=8, stor_count=1, idle=50, idle_tls=20,
                  tftp_clients=8, storm=32, timeout=60, settle=False, tftp_one_count=2, rounds=1,
                  lock_clients=8, storm_big=64, tftp_tiny=16 << 10),
}


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Accounting: cgroup (v2, else v1 cpuacct+memory) when we may create one, else /proc.


class Cgroup:
    """A fresh cgroup per server start: CPU time and peak memory of everything in it."""

    def __init__(self, name):
        self.dirs, self.kind = [], None
        v2 = Path("/sys/fs/cgroup")
        try:
            if (v2 / "cgroup.controllers").exists():
                ctl = (v2 / "cgroup.controllers").read_text().split()
                if "cpu" in ctl and "memory" in ctl:
                    (v2 / "cgroup.subtree_control").write_text("+cpu +memory")
                    parent = v2 / "ferry-bench"
                    parent.mkdir(exist_ok=True)
                    (parent / "cgroup.subtree_control").write_text("+cpu +memory")
                    d = parent / name
                    d.mkdir()
                    self.dirs, self.kind = [d], "v2"
                    return
            own = {}
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, ctrls, path = line.split(":", 2)
                for c in ctrls.split(","):
                    own[c] = path
            cpu = v2 / "cpuacct"
            mem = v2 / "memory"
            if cpu.is_dir() and mem.is_dir():
                dirs = [cpu / own.get("cpuacct", "/").lstrip("/") / f"ferry-bench-{name}",
                        mem / own.get("memory", "/").lstrip("/") / f"ferry-bench-{name}"]
                for d in dirs:
                    d.mkdir()
                self.dirs, self.kind = dirs, "v1"
        except OSError as e:
            log(f"no cgroup accounting ({e}); using /proc")
            self.remove()
            self.dirs, self.kind = [], None

    def join(self):
        """Runs in the child before exec: move ourselves into the cgroup."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self):
        out = set()
        for d in self.dirs[:1]:
            try:
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return out

    def cpu_s(self):
        try:
            if self.kind == "v2":
                for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
            if self.kind == "v1":
                return int((self.dirs[0] / "cpuacct.usage").read_text()) / 1e9
        except OSError:
            pass
        return None

    def mem_peak(self):
        try:
            if self.kind == "v2":
                return int((self.dirs[0] / "memory.peak").read_text())
            if self.kind == "v1":
                return int((self.dirs[1] / "memory.max_usage_in_bytes").read_text())
        except OSError:
            pass
        return None

    def remove(self):
        for d in reversed(self.dirs):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in seconds, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rfind(")") + 2:].split()
    return int(f[1]), (int(f[11]) + int(f[12])) / CLK, (int(f[13]) + int(f[14])) / CLK


def descendants(root):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            st = proc_stat(int(p))
            if st:
                kids.setdefault(st[0], []).append(int(p))
    out, todo = {root}, [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def rss_bytes(pids):
    total = 0
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


class Server:
    """One started server process tree, with its accounting."""

    def __init__(self, name, argv, env=None, ready=None, cwd=None):
        self.name = name
        self.cg = Cgroup(f"{name}-{os.getpid()}-{time.monotonic_ns()}")
        self.err = open(WORK / f"{name}.stderr", "ab")
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err, cwd=cwd, start_new_session=True,
                                     preexec_fn=self.cg.join if self.cg.kind else None)
        self.rss_peak = 0
        self.procs_peak = 0
        self._sampling = None
        deadline = time.time() + 10
        while ready and not ready() and time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start (code {self.proc.returncode}); see {self.err.name}")
            time.sleep(0.05)

    def pids(self):
        return self.cg.pids() if self.cg.kind else descendants(self.proc.pid)

    def cpu_s(self):
        c = self.cg.cpu_s()
        if c is not None:
            return c
        # Without a cgroup: the top process's own and reaped children's time, plus live ones.
        top = proc_stat(self.proc.pid)
        total = (top[1] + top[2]) if top else 0.0
        for p in descendants(self.proc.pid) - {self.proc.pid}:
            st = proc_stat(p)
            total += st[1] if st else 0.0
        return total

    def sample(self):
        pids = self.pids()
        self.procs_peak = max(self.procs_peak, len(pids))
        self.rss_peak = max(self.rss_peak, rss_bytes(pids))

    def start_sampling(self, every):
        stop = threading.Event()

        def loop():
            while not stop.wait(every):
                self.sample()
        threading.Thread(target=loop, daemon=True).start()
        self._sampling = stop

    def stop_sampling(self):
        if self._sampling:
            self._sampling.set()

    def stop(self):
        self.stop_sampling()
        pids = self.pids() | {self.proc.pid}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.time() + 3
            while self.pids() - {self.proc.pid} and time.time() < deadline:
                time.sleep(0.05)
            pids = self.pids()
            if not pids:
                break
        self.cg.remove()
        self.err.close()


LIVE = []


def cleanup(*_):
    for s in list(LIVE):
        try:
            s.stop()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log(f"stopping {s.name}: {e}")
    LIVE.clear()


def listening(port, tables, state=None):
    """True once a socket is bound to `port` (in `state`, e.g. 0A = LISTEN), per /proc/net."""
    for table in tables:
        try:
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if int(f[1].split(":")[1], 16) == port and (state is None or f[3] == state):
                    return True
        except (OSError, ValueError, IndexError):
            pass
    return False


def tcp_ready(port):
    # Looked up rather than connected to: a probe connection would use up `iperf3 -1`.
    return lambda: listening(port, ("/proc/net/tcp", "/proc/net/tcp6"), "0A")


def udp_ready(port):
    return lambda: listening(port, ("/proc/net/udp", "/proc/net/udp6"))


# ---------------------------------------------------------------------------------------
# How each server is started with equivalent settings.

def tls_files():
    """(certificate, key) of the FTPS scenarios, made once per work directory with openssl:
    one self-signed ECDSA P-256 certificate that every server uses, so that handshakes cost
    the same signature everywhere. None without openssl."""
    d = WORK / "tls"
    cert, key = d / "cert.pem", d / "key.pem"
    if not (cert.exists() and key.exists()):
        if not shutil.which("openssl"):
            return None
        d.mkdir(exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "3650", "-subj", "/CN=ferry-bench", "-addext",
                        "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        os.chmod(d, 0o755)
    return cert, key


def start_ferry(workers, writable=False, single_port=False, tls=False):
    name = "ferry-single" if single_port else f"ferry{'-tls' if tls else ''}-w{workers}"
    conf = WORK / f"{name}.toml"
    tls_conf = ""
    if tls:
        cert, key = tls_files()
        # Like vsftpd's force_anon_logins_ssl + force_anon_data_ssl + require_ssl_reuse.
        tls_conf = f"""[ftp.tls]
enabled = true
certificate = "{cert}"
private_key = "{key}"
required = "all"
require_session_reuse = true
"""
    conf.write_text(f"""# Equivalent to the references: anonymous, same root, warn-level logs only.
root = "{ROOT}"
workers = {workers}
user = "nobody"
[log]
target = "stderr"
level = "warn"
[ftp]
listen = ["127.0.0.1:{FTP_PORT}"]
active_source_port = 0
[ftp.passive]
ports = "{PASSIVE[0]}-{PASSIVE[1]}"
# Every load client is 127.0.0.1; the references bound no address's listeners either.
max_ports_per_ip = 65535
[ftp.anonymous]
writable = {str(writable).lower()}
[ftp.limits]
max_sessions = 20000
max_sessions_per_ip = 20000
idle_timeout_secs = 600
[tftp]
listen = ["127.0.0.1:{TFTP_PORT}"]
max_transfers = 20000
requests_per_second_per_ip = 0
single_port = {str(single_port).lower()}
{tls_conf}""")
    return Server(name, [str(ARGS.ferry), "-c", str(conf)], ready=tcp_ready(FTP_PORT))


def start_vsftpd(writable=False, tls=False):
    conf = WORK / "vsftpd.conf"
    tls_conf = ""
    if tls:
        cert, key = tls_files()
        # Anonymous sessions must protect login and data, and a data connection must resume
        # the control connection's TLS session (require_ssl_reuse, on by default too).
        tls_conf = f"""ssl_enable=YES
rsa_cert_file={cert}
rsa_private_key_file={key}
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
"""
    conf.write_text(f"""listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={FTP_PORT}
background=NO
anonymous_enable=YES
local_enable=NO
anon_root={ROOT}
no_anon_password=YES
write_enable={'YES' if writable else 'NO'}
anon_upload_enable={'YES' if writable else 'NO'}
pasv_enable=YES
pasv_min_port={PASSIVE[0]}
pasv_max_port={PASSIVE[1]}
max_clients=0
max_per_ip=0
xferlog_enable=NO
syslog_enable=NO
log_ftp_protocol=NO
connect_from_port_20=NO
secure_chroot_dir={WORK / 'empty'}
idle_session_timeout=600
data_connection_timeout=600
{tls_conf}""")
    (WORK / "empty").mkdir(exist_ok=True)
    return Server("vsftpd", [ARGS.vsftpd, str(conf)], ready=tcp_ready(FTP_PORT))


def start_tftpd_hpa():
    return Server("tftpd-hpa", [ARGS.in_tftpd, "-L", "-s", str(ROOT), "-a", f"127.0.0.1:{TFTP_PORT}",
                                "-u", ARGS.tftp_user], ready=udp_ready(TFTP_PORT))


def start_atftpd():
    return Server("atftpd", [ARGS.atftpd, "--daemon", "--no-fork", "--port", str(TFTP_PORT),
                             "--bind-address", "127.0.0.1", "--user", "nobody", "--group", "nogroup",
                             "--maxthread", "5000", "--logfile", "/dev/null", "--no-multicast", str(ROOT)],
                  ready=udp_ready(TFTP_PORT))


STARTERS = {
    "ferry": lambda sc: start_ferry(sc.get("workers", ARGS.workers), sc.get("writable", False),
                                    tls=sc.get("tls", False)),
    "ferry-w1": lambda sc: start_ferry(1),
    "ferry-w2": lambda sc: start_ferry(2),
    "ferry-single": lambda sc: start_ferry(sc.get("workers", ARGS.workers), single_port=True),
    "vsftpd": lambda sc: start_vsftpd(sc.get("writable", False), sc.get("tls", False)),
    "tftpd-hpa": lambda sc: start_tftpd_hpa(),
    "atftpd": lambda sc: start_atftpd(),
}


def available(server):
    if server.startswith("ferry"):
        return ARGS.ferry and Path(ARGS.ferry).exists()
    path = {"vsftpd": ARGS.vsftpd, "tftpd-hpa": ARGS.in_tftpd, "atftpd": ARGS.atftpd}[server]
    return bool(path) and Path(path).exists()


# ---------------------------------------------------------------------------------------
# Scenarios.

# (id suffix, title note, load generator flags) of the windowed TFTP scenarios.
TFTP_CLIENT_RECEIVE = [("", " (client receives with UDP_GRO)", ["--gro"]),
                       ("-nogro", " (client without UDP_GRO)", [])]


def scenarios(p):
    # vsftpd listens with a backlog of 32: in a burst, some handshakes wait for SYN-ACK
    # retransmissions (1+2+4+8+16 s), so allow 2 minutes per step and count that as latency.
    ftp = ["--addr", f"127.0.0.1:{FTP_PORT}", "--io-timeout", "120"]
    tftp = ["--addr", f"127.0.0.1:{TFTP_PORT}"]
    # FTPS (issue 13): AUTH TLS, login, PBSZ 0, PROT P; data connections resume the control
    # connection's TLS session (both servers require it). TLS 1.3, AES-256-GCM either way.
    ftps = [*ftp, "--tls", "explicit"]
    return [
        dict(id="retr-big", title=f"one client, RETR {human(p['big'])} binary, warm cache",
             servers=["ferry", "vsftpd"], iperf=True, rounds=True,
             # Length only: hashing would make the client, not the server, the limit.
             argv=["ftp-get", *ftp, "--path", "big", "--expect-size", str(p["big"]), "-c", "1",
                   "-n", str(p["big_count"]), "--buf-size", "1M"]),
        dict(id="sessions", title="64 clients, each session: connect, login, EPSV, RETR 1 KiB, QUIT",
             servers=["ferry", "vsftpd"],
             argv=["ftp-get", *ftp, "--path", "small", "--expect-file", str(ROOT / "small"), "-c", "64",
                   "-d", str(p["sess_secs"])]),
        dict(id="retr-mid", title=f"{p['mid_clients']} clients, RETR {human(p['mid'])} each",
             servers=["ferry", "vsftpd"],
             argv=["ftp-get", *ftp, "--path", "mid", "--expect-file", str(ROOT / "mid"),
                   "-c", str(p["mid_clients"]), "-n", str(p["mid_count"])]),
        dict(id="stor-big", title=f"one client, STOR {human(p['big'])}", servers=["ferry", "vsftpd"],
             writable=True, rounds=True,
             argv=["ftp-put", *ftp, "--path", "upload/{t}-{n}-" + str(time.time_ns()), "--size",
                   str(p["big"]), "-c", "1", "-n", str(p["stor_count"]), "--buf-size", "1M"]),
        dict(id="idle", title=f"{p['idle']:,} logged-in idle sessions", servers=["ferry", "vsftpd"],
             idle=True, argv=["ftp-idle", *ftp, "--sessions", str(p["idle"]), "-c", "64", "--hold", "3"]),
        dict(id="ftps-retr-big", title=f"one client, RETR {human(p['big'])} over PROT P (user-space TLS)",
             servers=["ferry", "vsftpd"], tls=True, rounds=True,
             argv=["ftp-get", *ftps, "--path", "big", "--expect-size", str(p["big"]), "-c", "1",
                   "-n", str(p["big_count"]), "--buf-size", "1M"]),
        dict(id="ftps-stor-big", title=f"one client, STOR {human(p['big'])} over PROT P",
             servers=["ferry", "vsftpd"], tls=True, writable=True, rounds=True,
             argv=["ftp-put", *ftps, "--path", "upload/{t}-{n}-tls-" + str(time.time_ns()), "--size",
                   str(p["big"]), "-c", "1", "-n", str(p["stor_count"]), "--buf-size", "1M"]),
        dict(id="ftps-sessions",
             title="64 clients, each session: connect, AUTH TLS, login, PROT P, EPSV, RETR 1 KiB, QUIT",
             servers=["ferry", "vsftpd"], tls=True,
             argv=["ftp-get", *ftps, "--path", "small", "--expect-file", str(ROOT / "small"), "-c", "64",
                   "-d", str(p["sess_secs"])]),
        dict(id="ftps-idle", title=f"{p['idle_tls']:,} logged-in idle TLS control sessions",
             servers=["ferry", "vsftpd"], tls=True, idle=True,
             argv=["ftp-idle", *ftps, "--sessions", str(p["idle_tls"]), "-c", "64", "--hold", "3"]),
        # UDP_GRO in the client stands in for the offloads of a real link (UDP segmentation
        # on the server's NIC, GRO on the client's): without it, loopback cuts every GSO send
        # into datagrams in software on the server's CPU. Servers that send datagrams one by
        # one (tftpd-hpa, atftpd) are unaffected. The -nogro rows show the software path.
        *(dict(id=f"tftp-many{sfx}",
               title=f"{p['tftp_clients']} TFTP clients, {human(p['mid'])}, blksize 1468, window 16{note}",
               servers=["ferry", "tftpd-hpa", "atftpd"],
               argv=["tftp-get", *tftp, "--path", "mid", "--expect-file", str(ROOT / "mid"), "--blksize",
                     "1468", "--windowsize", "16", "--tsize", "-c", str(p["tftp_clients"]), "-n",
                     str(p["tftp_clients"]), *gro])
          for sfx, note, gro in TFTP_CLIENT_RECEIVE),
        *(dict(id=f"tftp-one{sfx}", title=f"one TFTP client, {human(p['tftp_big'])}, blksize 1468, window 64{note}",
               servers=["ferry", "tftpd-hpa", "atftpd"], rounds=True,
               argv=["tftp-get", *tftp, "--path", "tbig", "--expect-file", str(ROOT / "tbig"), "--blksize",
                     "1468", "--windowsize", "64", "--tsize", "-c", "1", "-n", str(p["tftp_one_count"]), *gro])
          for sfx, note, gro in TFTP_CLIENT_RECEIVE),
        # Lock-step (no windowsize): iPXE, legacy PXE, U-Boot and Windows bootmgr by default.
        dict(id="tftp-lock-one", title=f"one TFTP client, {human(p['tftp_big'])}, blksize 1468, lock-step",
             servers=["ferry", "tftpd-hpa", "atftpd"], rounds=True, floor="tbig",
             argv=["tftp-get", *tftp, "--path", "tbig", "--expect-file", str(ROOT / "tbig"), "--blksize",
                   "1468", "--tsize", "-c", "1", "-n", "1"]),
        dict(id="tftp-lock-many",
             title=f"{p['lock_clients']:,} TFTP clients at once, {human(p['tftp_small'])} each, blksize 1468, lock-step",
             servers=["ferry", "tftpd-hpa", "atftpd"],
             argv=["tftp-get", *tftp, "--path", "tsmall", "--expect-file", str(ROOT / "tsmall"), "--blksize",
                   "1468", "--tsize", "-c", str(p["lock_clients"]), "-n", str(p["lock_clients"]), "--retries", "8"]),
        dict(id="tftp-storm", title=f"{p['storm']:,} TFTP clients at once, {human(p['tftp_small'])} each, lock-step",
             servers=["ferry", "ferry-single", "tftpd-hpa", "atftpd"],
             argv=["tftp-get", *tftp, "--path", "tsmall", "--expect-file", str(ROOT / "tsmall"), "--blksize",
                   "1468", "--tsize", "-c", str(p["storm"]), "-n", str(p["storm"]), "--retries", "8"]),
        dict(id="tftp-storm-big",
             title=f"{p['storm_big']:,} TFTP clients at once, {human(p['tftp_tiny'])} each, lock-step",
             servers=["ferry"],
             argv=["tftp-get", *tftp, "--path", "ttiny", "--expect-file", str(ROOT / "ttiny"), "--blksize",
                   "1468", "--tsize", "-c", str(p["storm_big"]), "-n", str(p["storm_big"]), "--retries", "8"]),
        dict(id="scale", title="workers = 1 against workers = 2, sessions/s scenario",
             servers=["ferry-w1", "ferry-w2"],
             argv=["ftp-get", *ftp, "--path", "small", "--expect-file", str(ROOT / "small"), "-c", "64",
                   "-d", str(p["sess_secs"])]),
    ]


def human(n):
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def prepare_files(p):
    sizes = {"big": p["big"], "mid": p["mid"], "small": 1024, "tbig": p["tftp_big"], "tsmall": p["tftp_small"],
             "ttiny": p["tftp_tiny"]}
    ROOT.mkdir(parents=True, exist_ok=True)
    up = ROOT / "upload"
    shutil.rmtree(up, ignore_errors=True)
    up.mkdir()
    os.chmod(up, 0o1777)  # vsftpd writes as "ftp", Ferry as "nobody"
    os.chmod(ROOT, 0o755)
    for name, size in sizes.items():
        f = ROOT / name
        if not f.exists() or f.stat().st_size != size:
            log(f"writing {f} ({human(size)}, random)")
            with open("/dev/urandom", "rb") as src, open(f, "wb") as dst:
                left = size
                while left:
                    chunk = src.read(min(left, 4 * MiB))
                    dst.write(chunk)
                    left -= len(chunk)
        os.chmod(f, 0o644)


def warm(files):
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(8 * MiB):
                pass


def settle_dirty_pages(limit=64 * MiB, wait_s=120):
    """Writes back dirty page cache so that no server inherits an earlier run's writeback.

    Uploads land in the page cache; once dirty pages pass the kernel's thresholds, writers
    are throttled to the disk's speed. Without this, whichever server runs after the test
    files were written (or after another upload run) measures the disk, not itself.
    """
    os.sync()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        dirty = sum(int(info[k].split()[0]) * 1024 for k in ("Dirty", "Writeback"))
        if dirty <= limit:
            return
        time.sleep(0.2)


# A virtual machine with free page reporting (virtio-balloon) hands freed guest memory back
# to the hypervisor in 2 MiB blocks; the next touch of such a block faults on the host. Here
# that cost 0.8-1.9 s per GiB, landing on whichever upload's page cache drew such blocks
# (a 1 GiB STOR went from 2.9 GB/s to 0.65-1.3 GB/s, worst for large folios).
PAGE_REPORTING_ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
NO_REPORTING_ORDER = "11"  # above the buddy allocator's largest order: nothing is reported


def hold_guest_memory(gib):
    """Pauses free page reporting for the run and touches `gib` GiB once, so that the memory
    the scenarios allocate is backed by the host. Returns a note for the report (or None);
    `release_guest_memory` restores the setting."""
    global REPORTING_WAS
    try:
        REPORTING_WAS = PAGE_REPORTING_ORDER.read_text().strip()
        PAGE_REPORTING_ORDER.write_text(NO_REPORTING_ORDER)
    except OSError:
        REPORTING_WAS = None
        return None
    t0 = time.monotonic()
    size, chunk = gib << 30, b"\1" * (64 * MiB)
    with mmap.mmap(-1, size) as m:
        for off in range(0, size, len(chunk)):
            m[off:off + len(chunk)] = chunk
    log(f"free page reporting paused (order {REPORTING_WAS} -> {NO_REPORTING_ORDER}); "
        f"{gib} GiB touched in {time.monotonic() - t0:.1f} s")
    return f"the VM's free page reporting was paused during the run (order {REPORTING_WAS}) " \
           f"and {gib} GiB touched first, so that no run pays for host page faults"


def release_guest_memory():
    global REPORTING_WAS
    if REPORTING_WAS is not None:
        try:
            PAGE_REPORTING_ORDER.write_text(REPORTING_WAS)
        except OSError as e:
            log(f"cannot restore {PAGE_REPORTING_ORDER}: {e}")
        REPORTING_WAS = None


REPORTING_WAS = None


def cpu_busy_share(interval):
    """Share of all CPUs' time not idle over `interval` seconds (from /proc/stat)."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def settle_cpu(busy=0.05, wait_s=60):
    """Waits until the machine is quiet. Stopping a server can leave seconds of kernel work
    behind (vsftpd's 20,001 processes and 10,000 connections after the idle scenario); the
    next server must not be measured while that runs."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and cpu_busy_share(0.5) > busy:
        pass


def run_one(sc, server, p):
    """Starts `server`, runs the scenario's load against it, stops it, returns measurements."""
    out = {"server": server}
    if not available(server):
        out["skipped"] = "not installed"
        return out
    if sc.get("tls") and not tls_files():
        out["skipped"] = "no openssl to make the certificate"
        return out
    warm([ROOT / n for n in ("big", "mid", "small", "tbig", "tsmall", "ttiny") if (ROOT / n).exists()])
    if p["settle"]:
        settle_dirty_pages()
        settle_cpu()
    try:
        srv = STARTERS[server](sc)
    except (RuntimeError, OSError) as e:
        out["error"] = f"cannot start: {e}"
        return out
    LIVE.append(srv)
    try:
        # Memory walks are cheap for a few processes, not for 20,000 (vsftpd idle).
        srv.start_sampling(0.5 if not sc.get("idle") else 3600)
        cpu0 = srv.cpu_s()
        jf = WORK / f"{sc['id']}-{server}.json"
        jf.unlink(missing_ok=True)
        ready = WORK / f"{sc['id']}-{server}.ready"
        ready.unlink(missing_ok=True)
        argv = [str(ARGS.loadgen), "--target", server, "--json", str(jf), *sc["argv"]]
        if sc.get("idle"):
            argv += ["--ready-file", str(ready)]
        log(f"{sc['id']}: {server}: {' '.join(argv[5:])}")
        t0 = time.time()
        lg = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(WORK / "loadgen.stderr", "ab"))
        if sc.get("idle"):
            while lg.poll() is None and not ready.exists():
                time.sleep(0.1)
            if ready.exists():
                srv.sample()
        try:
            lg.wait(timeout=p["timeout"])
        except subprocess.TimeoutExpired:
            lg.kill()
            lg.wait()
            out["error"] = f"load generator did not finish in {p['timeout']} s"
        out["wall_s"] = time.time() - t0
        time.sleep(0.3)  # let sessions that just ended be reaped into the accounting
        srv.sample()
        out["server_cpu_s"] = srv.cpu_s() - cpu0
        out["rss_peak_bytes"] = srv.rss_peak
        out["procs_peak"] = srv.procs_peak
        out["cgroup_mem_peak_bytes"] = srv.cg.mem_peak()
        out["accounting"] = srv.cg.kind and f"cgroup {srv.cg.kind}" or "/proc"
        if jf.exists():
            out["load"] = json.loads(jf.read_text())
        elif "error" not in out:
            out["error"] = f"load generator exited {lg.returncode} without a report (see {WORK / 'loadgen.stderr'})"
        if sc.get("floor") and srv.proc.poll() is None:
            out["floor_mb_per_s"] = atftp_client_rate(sc["floor"])
        if srv.proc.poll() is not None:
            # A crashed server is a result (atftpd aborts past FD_SETSIZE), not a harness error.
            out["server_exited"] = srv.proc.returncode
            srv.err.flush()
            tail = Path(srv.err.name).read_bytes().decode(errors="replace").strip().splitlines()[-1:]
            out["server_last_words"] = tail[0][:200] if tail else ""
    finally:
        srv.stop()
        LIVE.remove(srv)
    shutil.rmtree(ROOT / "upload", ignore_errors=True)
    (ROOT / "upload").mkdir(exist_ok=True)
    os.chmod(ROOT / "upload", 0o1777)
    return out


def atftp_client_rate(name):
    """MB/s of one lock-step download of `name` by atftp, a blocking C client (the round-trip
    floor: one block per round trip with no client overhead to speak of); None without it."""
    client = shutil.which("atftp")
    if not client:
        return None
    size = (ROOT / name).stat().st_size
    t0 = time.time()
    r = subprocess.run([client, "--option", "blksize 1468", "-g", "-r", name, "-l", "/dev/null", "127.0.0.1",
                        str(TFTP_PORT)], capture_output=True, timeout=600)
    took = time.time() - t0
    return size / took / 1e6 if r.returncode == 0 and took > 0 else None


def median_run(runs):
    """The run with the median throughput (a failed run ranks lowest); all rounds' MB/s are
    kept in it under `rounds_mb_per_s`, and a round-trip floor measured each round is the
    median of the rounds' (kept under `rounds_floor_mb_per_s`)."""
    def mbps(r):
        L = r.get("load")
        return L["mb_per_s"] if L and L.get("ok") and not L.get("failed") else -1.0
    ranked = sorted(runs, key=mbps)
    pick = dict(ranked[(len(ranked) - 1) // 2])
    if len(runs) > 1:
        pick["rounds_mb_per_s"] = [round(mbps(r), 1) for r in runs]
        floors = sorted(r["floor_mb_per_s"] for r in runs if r.get("floor_mb_per_s"))
        if floors:
            pick["floor_mb_per_s"] = floors[(len(floors) - 1) // 2]
            pick["rounds_floor_mb_per_s"] = [round(f, 1) for f in floors]
    return pick


def iperf(secs):
    if not shutil.which("iperf3"):
        return {"skipped": "iperf3 not installed"}
    srv = Server("iperf3", ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(IPERF_PORT)],
                 ready=tcp_ready(IPERF_PORT))
    LIVE.append(srv)
    try:
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-Z", "-t", str(secs), "-J"],
                           capture_output=True, text=True, timeout=secs + 30)
        data = json.loads(r.stdout)
        end = data["end"]
        return {"mb_per_s": end["sum_received"]["bits_per_second"] / 8 / 1e6,
                "sender_cpu_pct": end.get("cpu_utilization_percent", {}).get("host_total")}
    except (subprocess.SubprocessError, ValueError, KeyError) as e:
        return {"error": f"iperf3: {e}"}
    finally:
        srv.stop()
        LIVE.remove(srv)


# ---------------------------------------------------------------------------------------
# The table: one row per (scenario, metric, reference), ratio Ferry / reference.

def metric(run, name):
    """A number from a run, or None when the run failed or lacks it."""
    if not run or "load" not in run:
        return None
    L = run["load"]
    if name == "mbps":
        return L["mb_per_s"] if L["ok"] else None
    if name == "sessions":
        return L["sessions_per_s"] if L["ok"] else None
    if name == "p99":
        return L["latency_ms"]["p99"] if L["ok"] else None
    if name == "attempt_p99":
        return L["attempt_ms"]["p99"] if L.get("attempt_ms") and (L["ok"] or L["failed"]) else None
    if name == "cpu_per_gb":
        return run["server_cpu_s"] / (L["bytes"] / 1e9) if L["bytes"] else None
    if name == "cpu_ms_per_unit":
        return run["server_cpu_s"] * 1000 / L["ok"] if L["ok"] else None
    if name == "sessions_per_cpu_s":
        return L["ok"] / run["server_cpu_s"] if L["ok"] and run["server_cpu_s"] else None
    if name == "accepted":
        return L.get("held", 0)
    if name == "rss":
        return run["rss_peak_bytes"] / MiB
    if name == "cgmem":
        return run["cgroup_mem_peak_bytes"] / MiB if run.get("cgroup_mem_peak_bytes") else None
    if name == "failed":
        return L["failed"]
    raise KeyError(name)


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{v}{unit}"


def describe_failure(run):
    if not run:
        return "not run"
    if "server_exited" in run:
        return f"FAIL: server died (exit {run['server_exited']}: {run.get('server_last_words', '')})"
    if "skipped" in run:
        return f"skipped ({run['skipped']})"
    if "error" in run and "load" not in run:
        return f"FAIL: {run['error']}"
    L = run.get("load", {})
    if L.get("errors"):
        kind, n = max(L["errors"].items(), key=lambda kv: kv[1])
        return f"FAIL: {L['failed']} failed ({kind} x{n})"
    return "FAIL"


def rows_for(sc, runs, iperf_res):
    """Yields (metric label, ferry text, ref label, ref text, ratio text, goal, met)."""
    F = runs.get("ferry") or runs.get("ferry-w2")

    def cmp(label, name, ref, goal_ratio, higher=True, unit=""):
        fv, rv = metric(F, name), metric(runs.get(ref), name)
        ftxt = fmt(fv, unit) if fv is not None else describe_failure(F)
        rtxt = fmt(rv, unit) if rv is not None else describe_failure(runs.get(ref))
        ratio = fv / rv if fv is not None and rv else None
        goal = f"{'>=' if higher else '<='} {goal_ratio:g} x {ref}"
        met = "n/a" if rv is None else ("no" if ratio is None else
                                        ("yes" if (ratio >= goal_ratio if higher else ratio <= goal_ratio) else "no"))
        return (label, ftxt, ref, rtxt, fmt(ratio, "x"), goal, met)

    def report(row):
        """A comparison shown for information: no goal applies to it."""
        return (*row[:5], "(report)", "—")

    def absolute(label, name, goal_txt, ok, unit="", refs=()):
        fv = metric(F, name)
        ftxt = fmt(fv, unit) if fv is not None else describe_failure(F)
        reftxt = ", ".join(f"{r} {fmt(metric(runs.get(r), name), unit)}" for r in refs if runs.get(r))
        met = "—" if ok is None else ("yes" if fv is not None and ok(fv) else "no")
        return (label, ftxt, "—", reftxt or "—", "—", goal_txt, met)

    i = sc["id"]
    if i == "retr-big":
        yield cmp("MB/s", "mbps", "vsftpd", 1.0)
        ip = iperf_res.get("mb_per_s")
        fv = metric(F, "mbps")
        yield ("MB/s vs loopback", fmt(fv) if fv is not None else describe_failure(F), "iperf3 -Z",
               fmt(ip) if ip else str(iperf_res.get("error") or iperf_res.get("skipped")),
               fmt(fv / ip if fv and ip else None, "x"), ">= 0.9 x iperf3 -Z",
               "n/a" if not ip else ("yes" if fv and fv / ip >= 0.9 else "no"))
        yield cmp("server CPU s per GB", "cpu_per_gb", "vsftpd", 0.8, higher=False)
    elif i in ("sessions",):
        yield cmp("sessions/s", "sessions", "vsftpd", 10.0)
    elif i == "ftps-retr-big":
        yield cmp("MB/s", "mbps", "vsftpd", 1.2)
        yield cmp("server CPU s per GB", "cpu_per_gb", "vsftpd", 1.0, higher=False)
    elif i == "ftps-stor-big":
        yield cmp("MB/s", "mbps", "vsftpd", 1.2)
        yield report(cmp("server CPU s per GB", "cpu_per_gb", "vsftpd", 1.0, higher=False))
    elif i == "ftps-sessions":
        yield cmp("sessions/s", "sessions", "vsftpd", 5.0)
        # What a session costs the server, whatever else the 2 cores were running: the
        # sessions/s ratio is capped by the client's share of the machine, this one is not.
        yield report(cmp("server CPU ms per session", "cpu_ms_per_unit", "vsftpd", 1.0, higher=False))
    elif i == "retr-mid":
        yield cmp("aggregate MB/s", "mbps", "vsftpd", 1.2)
        # What a client waits for its file: connect to the end of the session. A server that
        # admits few transfers at once (vsftpd's listen backlog is 32) keeps the others in its
        # accept queue, which only this row sees; a failed session counts its time to failure.
        yield cmp("p99 latency ms, whole session (failures count)", "attempt_p99", "vsftpd", 1.0, higher=False)
        yield report(cmp("p99 latency ms, RETR to 226 only", "p99", "vsftpd", 1.0, higher=False))
    elif i == "stor-big":
        yield cmp("MB/s", "mbps", "vsftpd", 1.0)
    elif i in ("idle", "ftps-idle"):
        want = int(sc["argv"][sc["argv"].index("--sessions") + 1])
        yield absolute("sessions held", "accepted", f"all {want:,}", lambda v: v >= want, refs=("vsftpd",))
        all_held = (metric(F, "accepted") or 0) >= want
        yield absolute("server RSS sum MiB", "rss", "<= 64 MiB with all held", lambda v: all_held and v <= 64,
                       refs=("vsftpd",))
        yield absolute("cgroup memory peak MiB", "cgmem", "(report)", None, refs=("vsftpd",))
    elif i == "tftp-many":
        yield cmp("aggregate MB/s", "mbps", "tftpd-hpa", 10.0)
        yield cmp("aggregate MB/s", "mbps", "atftpd", 2.0)
    elif i == "tftp-many-nogro":
        yield report(cmp("aggregate MB/s", "mbps", "tftpd-hpa", 10.0))
        yield report(cmp("aggregate MB/s", "mbps", "atftpd", 2.0))
    elif i == "tftp-one":
        yield absolute("MB/s", "mbps", ">= 1000 MB/s", lambda v: v >= 1000, refs=("tftpd-hpa", "atftpd"))
        yield absolute("server RSS peak MiB", "rss", "(report)", None, refs=("tftpd-hpa", "atftpd"))
    elif i == "tftp-one-nogro":
        yield absolute("MB/s", "mbps", "(report)", None, refs=("tftpd-hpa", "atftpd"))
    elif i == "tftp-lock-one":
        yield cmp("MB/s", "mbps", "tftpd-hpa", 1.0)
        yield report(cmp("MB/s", "mbps", "atftpd", 1.0))
        # The round-trip floor: one blocking C client (atftp) against the fastest server, same
        # run. Ferry is measured with that same client, so the ratio compares servers and not
        # clients (the load generator's own wake-ups are in its rows above).
        floors = {s: r.get("floor_mb_per_s") for s, r in runs.items() if r and r.get("floor_mb_per_s")}
        best = max(floors.items(), key=lambda kv: kv[1]) if floors else None
        fv = floors.get("ferry")
        ratio = fv / best[1] if fv and best else None
        yield ("MB/s with atftp (a blocking C client) vs the round-trip floor",
               fmt(fv) if fv is not None else "not measured",
               f"atftp client vs {best[0]}" if best else "atftp client", fmt(best[1]) if best else "not measured",
               fmt(ratio, "x"), ">= 0.9 x floor", "n/a" if ratio is None else ("yes" if ratio >= 0.9 else "no"))
        others = {s: v for s, v in floors.items() if s != "ferry"}
        if others:
            yield ("MB/s with atftp, each server (report)", fmt(fv) if fv is not None else "not measured", "—",
                   ", ".join(f"{s} {fmt(v)}" for s, v in others.items()), "—", "(report)", "—")
    elif i == "tftp-lock-many":
        yield cmp("aggregate MB/s", "mbps", "tftpd-hpa", 2.0)
        yield cmp("aggregate MB/s", "mbps", "atftpd", 1.5)
    elif i == "tftp-storm":
        yield absolute("failed transfers", "failed", "0", lambda v: v == 0, refs=("ferry-single", "tftpd-hpa", "atftpd"))
        yield cmp("aggregate MB/s", "mbps", "tftpd-hpa", 2.0)
        yield cmp("p99 transfer ms", "p99", "tftpd-hpa", 0.5, higher=False)
        yield cmp("server CPU s per GB", "cpu_per_gb", "tftpd-hpa", 0.4, higher=False)
        yield absolute("server RSS peak MiB", "rss", "bounded (report)", None,
                       refs=("tftpd-hpa", "atftpd"))
        single, multi = metric(runs.get("ferry-single"), "mbps"), metric(F, "mbps")
        ratio = single / multi if single and multi else None
        yield ("aggregate MB/s, single-port mode / per-transfer ports",
               fmt(single) if single is not None else describe_failure(runs.get("ferry-single")),
               "ferry, per-transfer ports", fmt(multi), fmt(ratio, "x"), ">= 0.9",
               "n/a" if ratio is None else ("yes" if ratio >= 0.9 else "no"))
    elif i == "tftp-storm-big":
        yield absolute("failed transfers", "failed", "0", lambda v: v == 0)
        yield absolute("aggregate MB/s", "mbps", "(report)", None)
        yield absolute("server RSS peak MiB", "rss", "bounded (report)", None)
    elif i == "scale":
        w1, w2 = metric(runs.get("ferry-w1"), "sessions"), metric(runs.get("ferry-w2"), "sessions")
        ratio = w2 / w1 if w1 and w2 else None
        yield ("sessions/s, workers 2 / 1",
               fmt(w2) if w2 is not None else describe_failure(runs.get("ferry-w2")), "workers = 1",
               fmt(w1) if w1 is not None else describe_failure(runs.get("ferry-w1")),
               fmt(ratio, "x"), ">= 1.7", "yes" if ratio and ratio >= 1.7 else "no")
        # Sessions per server CPU-second: flat from 1 to 2 workers means a second worker
        # costs nothing in shared state, so throughput follows the cores Ferry gets.
        e1, e2 = (metric(runs.get(k), "sessions_per_cpu_s") for k in ("ferry-w1", "ferry-w2"))
        yield ("sessions per server CPU-second, workers 2 / 1", fmt(e2), "workers = 1", fmt(e1),
               fmt(e2 / e1 if e1 and e2 else None, "x"), "(report)", "—")


def machine():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} x {cpu}, {mem} GiB, kernel {os.uname().release}"


def render(results, iperf_res, profile, memory_note=None):
    lines = [f"# Ferry benchmark ({profile} profile)", "",
             f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"Loopback ceiling, one stream, `iperf3 -Z`: {fmt(iperf_res.get('mb_per_s'))} MB/s.",
             "MB/s are 10^6 bytes per second. Ratio = Ferry / reference.", "",
             "| scenario | metric | Ferry | reference | value | ratio | goal | met? |",
             "|---|---|---|---|---|---|---|---|"]
    for sc, runs in results:
        for label, ftxt, ref, rtxt, ratio, goal, met in rows_for(sc, runs, iperf_res):
            lines.append(f"| {sc['title']} | {label} | {ftxt} | {ref} | {rtxt} | {ratio} | {goal} | {met} |")
    lines += ["", "Per run: server CPU seconds (cgroup or /proc), load generator CPU seconds, peak processes.", "",
              "| scenario | server | ok | failed | per s | MB/s | p50 ms | p99 ms | server CPU s | RSS peak MiB"
              " | procs | loadgen CPU s | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sc, runs in results:
        for name, r in runs.items():
            L = r.get("load")
            if not L:
                lines.append(f"| {sc['id']} | {name} | {describe_failure(r)} |  |  |  |  |  |  |  |  |  |  |")
                continue
            lines.append(
                f"| {sc['id']} | {name} | {L['ok']} | {L['failed']} | {fmt(L['per_s'])} | {fmt(L['mb_per_s'])} | "
                f"{fmt(L['latency_ms']['p50'])} | {fmt(L['latency_ms']['p99'])} | {fmt(r['server_cpu_s'])} | "
                f"{fmt(r['rss_peak_bytes'] / MiB)} | {r['procs_peak']} | {fmt(L['loadgen_cpu_s']['total'])} | "
                f"{fmt(r['wall_s'])} |")
    lines += ["", "Settings: anonymous, same root, logging off (vsftpd, atftpd) or warn (Ferry), passive ports "
              f"{PASSIVE[0]}-{PASSIVE[1]}; vsftpd max_clients=0 max_per_ip=0 (unlimited), seccomp default; "
              "tftpd-hpa `in.tftpd -L -s` (no windowsize: it ignores the option, so lock-step); atftpd "
              "--maxthread 5000. Every server restarted per scenario; all on 127.0.0.1."
              + (f" Host: {memory_note}." if memory_note else ""), ""]
    multi = [(sc["id"], name, r["rounds_mb_per_s"]) for sc, runs in results for name, r in runs.items()
             if r.get("rounds_mb_per_s")]
    if multi:
        lines += ["Rounds (servers alternating; the median run is the one shown): " +
                  "; ".join(f"{i} {n} {', '.join(fmt(v) for v in vals)} MB/s" for i, n, vals in multi) + ".", ""]
    floors = [(sc["id"], name, r["rounds_floor_mb_per_s"]) for sc, runs in results for name, r in runs.items()
              if r.get("rounds_floor_mb_per_s")]
    if floors:
        lines += ["Round-trip floor rounds (atftp client, sorted; the median is used): " +
                  "; ".join(f"{i} {n} {', '.join(fmt(v) for v in vals)} MB/s" for i, n, vals in floors) + ".", ""]
    return "\n".join(lines)


def main():
    global ARGS, WORK, ROOT, FTP_PORT, TFTP_PORT
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", choices=PROFILES, default="full")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; same as --profile smoke")
    ap.add_argument("--only", default="", help="comma-separated scenario ids")
    ap.add_argument("--servers", default="", help="comma-separated servers to run (default: all)")
    ap.add_argument("--workers", type=int, default=0, help="Ferry workers for the main scenarios (0 = per CPU)")
    ap.add_argument("--ferry", default=str(REPO / "target/release/ferry"))
    ap.add_argument("--loadgen", default=str(REPO / "target/release/ferry-loadgen"))
    ap.add_argument("--vsftpd", default=shutil.which("vsftpd") or "/usr/sbin/vsftpd")
    ap.add_argument("--in-tftpd", default=shutil.which("in.tftpd") or "/usr/sbin/in.tftpd")
    ap.add_argument("--atftpd", default=os.environ.get("ATFTPD", ""))
    ap.add_argument("--tftp-user", default="tftp")
    ap.add_argument("--work", default="/var/tmp/ferry-bench")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--ftp-port", type=int, default=FTP_PORT, help="where each FTP server listens")
    ap.add_argument("--tftp-port", type=int, default=TFTP_PORT, help="where each TFTP server listens")
    ARGS = ap.parse_args()
    FTP_PORT, TFTP_PORT = ARGS.ftp_port, ARGS.tftp_port
    profile = "smoke" if ARGS.smoke else ARGS.profile
    p = PROFILES[profile]
    WORK = Path(ARGS.work) / profile
    ROOT = WORK / "root"
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        import pwd
        pwd.getpwnam(ARGS.tftp_user)
    except KeyError:
        ARGS.tftp_user = "nobody"
    # Thousands of sessions: every process we start inherits this.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    only = set(filter(None, ARGS.only.split(",")))
    servers = set(filter(None, ARGS.servers.split(",")))
    prepare_files(p)
    results = []
    try:
        memory_note = hold_guest_memory(2 * p["big"] // GiB + 2) if p["settle"] else None
        iperf_res = iperf(2 if profile == "smoke" else 5) if not servers or "iperf3" in servers else {}
        log(f"iperf3 -Z: {iperf_res}")
        for sc in scenarios(p):
            if only and sc["id"] not in only:
                continue
            chosen = [s for s in sc["servers"] if not servers or s in servers
                      or (s.startswith("ferry") and "ferry" in servers)]
            rounds = {server: [] for server in chosen}
            # Short single-client scenarios alternate the servers over several rounds, so a
            # slow moment of the host does not land on one server only; the median counts.
            for _ in range(p["rounds"] if sc.get("rounds") else 1):
                for server in chosen:
                    run = run_one(sc, server, p)
                    rounds[server].append(run)
                    L = run.get("load")
                    log(f"  -> {server}: " + (f"ok {L['ok']} failed {L['failed']} {L['per_s']:.1f}/s "
                                              f"{L['mb_per_s']:.1f} MB/s" if L else describe_failure(run)))
            results.append((sc, {server: median_run(r) for server, r in rounds.items()}))
    finally:
        cleanup()
        release_guest_memory()
    md = render(results, iperf_res, profile, memory_note)
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "latest" if profile == "full" else f"latest-{profile}"
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(
        {"profile": profile, "machine": machine(), "iperf3": iperf_res,
         "scenarios": [{"id": sc["id"], "title": sc["title"], "runs": runs} for sc, runs in results]}, indent=1))
    print(md)
    log(f"wrote {out / (stem + '.md')} and .json")


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
        release_guest_memory()
