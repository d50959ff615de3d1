//! Network namespaces for multi-host tests: hosts and routers joined by veth pairs, with
//! private addresses that exist only inside the namespaces the test creates. Everything
//! is removed when the guards drop, even when the test fails.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// True when namespaces can be made here (root, `ip` present).
pub fn available() -> bool {
    super::is_root() && Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// One network namespace; deleted on drop (which also kills nothing: stop servers first).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("fy{}{}{n}", std::process::id() % 100_000, tag);
        sh_ok(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.run("ip link set lo up");
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell line inside the namespace; panics with its output on failure.
    pub fn run(&self, line: &str) -> Output {
        sh_ok(&format!("ip netns exec {} sh -c '{}'", self.name, line.replace('\'', "'\\''")))
    }

    /// Runs a shell line inside the namespace and returns its output, success or not.
    pub fn try_run(&self, line: &str) -> Output {
        sh(&format!("ip netns exec {} sh -c '{}'", self.name, line.replace('\'', "'\\''")))
    }

    /// Makes this namespace a router: forwarding on.
    pub fn enable_forwarding(&self) {
        self.run("sysctl -qw net.ipv4.ip_forward=1");
    }

    /// Runs `f` on a thread that has entered this namespace, so sockets it opens and
    /// processes it starts (which inherit the namespace) live inside it.
    pub fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread inside the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns pids {} | xargs -r kill -9", self.name));
        let _ = sh(&format!("ip netns del {}", self.name));
    }
}

/// Joins `a` and `b` with a veth pair, addressing each end (`10.9.1.1/24` form).
pub fn link(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (ia, ib) = (format!("va{n}"), format!("vb{n}"));
    sh_ok(&format!("ip link add {ia} netns {} type veth peer name {ib} netns {}", a.name, b.name));
    // `brd +`: the subnet broadcast address exists, as on a real LAN.
    a.run(&format!("ip addr add {a_addr} brd + dev {ia} && ip link set {ia} up"));
    b.run(&format!("ip addr add {b_addr} brd + dev {ib} && ip link set {ib} up"));
    (ia, ib)
}

/// Loses `percent`% of the packets that `sender` sends `receiver` over their link (each a
/// namespace and its device): netem on the sender's egress, or where the kernel has no netem
/// (some VMs and containers) an iptables `statistic` rule on the receiver's ingress. Dropping
/// at the sender's OUTPUT instead would fail its sendmsg with EPERM, not lose the packet.
/// False when neither is possible.
pub fn lose(receiver: (&Netns, &str), sender: (&Netns, &str), percent: u32) -> bool {
    let loss = format!("{percent}%");
    let netem = sender.0.try_run(&format!("tc qdisc add dev {} root netem loss {loss}", sender.1));
    if netem.status.success() {
        return true;
    }
    let p = format!("{:.2}", f64::from(percent) / 100.0);
    let (ns, dev) = receiver;
    let rule =
        format!("iptables -A INPUT -i {dev} -p udp -m statistic --mode random --probability {p} -j DROP");
    let ok = ns.try_run(&rule).status.success();
    if ok {
        eprintln!("netem unavailable: dropping {loss} of incoming UDP on {dev} with iptables instead");
    }
    ok
}

fn sh(line: &str) -> Output {
    Command::new("sh").arg("-c").arg(line).output().expect("sh")
}

fn sh_ok(line: &str) -> Output {
    let out = sh(line);
    assert!(
        out.status.success(),
        "`{line}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
