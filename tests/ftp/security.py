# Refusals against Ferry, over raw sockets so nothing is hidden by a client library.
# Usage: security.py CASE HOST PORT ROOT
import os, socket, sys, time

case, host, port, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


class Ctl:
    def __init__(self, src="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=15, source_address=(src, 0))
        self.f = self.s.makefile("rb")
        self.greeting = self.reply()

    def reply(self):
        line = self.f.readline().decode("utf-8", "replace")
        if line[3:4] == "-":
            code = line[:3]
            while True:
                more = self.f.readline().decode("utf-8", "replace")
                line += more
                if more.startswith(code + " ") or not more:
                    break
        return line

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()

    def login(self, user="anonymous", pw="x@"):
        assert self.cmd("USER " + user).startswith("331")
        r = self.cmd("PASS " + pw)
        assert r.startswith("230"), r

    def pasv(self):
        r = self.cmd("PASV")
        assert r.startswith("227"), r
        nums = r[r.index("(") + 1 : r.index(")")].split(",")
        return int(nums[4]) * 256 + int(nums[5])

    def retr(self, path):
        p = self.pasv()
        d = socket.create_connection((host, p), timeout=15)
        r = self.cmd("RETR " + path)
        got = b""
        if r.startswith("150"):
            while chunk := d.recv(65536):
                got += chunk
            r = self.reply()
        d.close()
        return r, got


def expect(r, code, what):
    assert r.startswith(code), f"{what}: expected {code}, got {r!r}"


if case == "traversal":
    c = Ctl()
    c.login()
    for path in ["../../../../etc/passwd", "/etc/passwd", "escape", "%2e%2e/%2e%2e/etc/passwd",
                 "uplink/etc/passwd", "..%2f..%2fetc%2fpasswd"]:
        r, got = c.retr(path)
        expect(r, "550", path)
        assert b"root:" not in got
    expect(c.cmd("CWD ../../../etc"), "550", "CWD out")  # /etc does not exist under the root
    expect(c.cmd("CWD uplink"), "250", "CWD into the symlink stays inside")
    expect(c.cmd("PWD"), '257 "/uplink"', "PWD")
    r, got = c.retr("hello.txt")  # uplink -> ../.. resolves to the root itself
    expect(r, "226", "RETR through uplink")
    assert got == b"hello from ferry\r\n", got  # TYPE A is the default: CRLF
elif case == "bounce":
    c = Ctl()
    c.login()
    expect(c.cmd("PORT 127,0,0,2,100,100"), "500", "PORT to another IP")
    expect(c.cmd("PORT 127,0,0,1,0,25"), "504", "PORT to port 25")
    expect(c.cmd("EPRT |1|10.9.9.9|2000|"), "500", "EPRT to another IP")
elif case == "foreign_passive":
    c = Ctl()
    c.login()
    c.cmd("TYPE I")
    p = c.pasv()
    intruder = socket.socket()
    intruder.bind(("127.0.0.2", 0))
    intruder.settimeout(10)
    intruder.connect((host, p))
    # RETR makes the server accept: it closes the intruder's connection and keeps waiting.
    c.s.sendall(b"RETR hello.txt\r\n")
    try:
        assert intruder.recv(10) == b""
    except ConnectionResetError:
        pass
    d = socket.create_connection((host, p), timeout=15)
    expect(c.reply(), "150", "RETR")
    got = d.recv(100)
    expect(c.reply(), "226", "RETR end")
    assert got == b"hello from ferry\n", got
elif case == "anonymous_write":
    c = Ctl()
    c.login()
    p = c.pasv()
    expect(c.cmd("STOR new.txt"), "550", "anonymous STOR")
    expect(c.cmd("MKD newdir"), "550", "anonymous MKD")
    expect(c.cmd("DELE hello.txt"), "550", "anonymous DELE")
    expect(c.cmd("RNFR hello.txt"), "550", "anonymous RNFR")
    assert os.path.exists(os.path.join(root, "hello.txt"))
    assert not os.path.exists(os.path.join(root, "new.txt"))
elif case == "brute_force":
    c = Ctl()
    replies = []
    for i in range(3):
        assert c.cmd("USER alice").startswith("331")
        t = time.monotonic()
        r = c.cmd("PASS wrong%d" % i)
        replies.append((r, time.monotonic() - t))
    for r, took in replies:
        expect(r, "530", "wrong password")
        assert took >= 0.18, f"failed login answered after {took:.3f}s"
    expect(c.reply(), "421", "closed after too many failures")
    assert c.f.readline() == b"", "connection closed"
elif case == "limits":
    # max_sessions = 3, max_sessions_per_ip = 2 (set by the test); let the start-up probe's
    # session end first.
    time.sleep(0.5)
    a, b = Ctl(), Ctl()
    expect(a.greeting, "220", "first")
    expect(b.greeting, "220", "second")
    expect(Ctl().greeting, "421", "third from the same IP")
    cc = Ctl("127.0.0.2")
    expect(cc.greeting, "220", "other IP")
    expect(Ctl("127.0.0.3").greeting, "421", "over the total")
    a.cmd("QUIT")
    a.s.close()
    time.sleep(0.3)
    expect(Ctl("127.0.0.3").greeting, "220", "slot freed")
elif case == "pipelining":
    c = Ctl()
    c.s.sendall(b"USER anonymous\r\nPASS x@\r\nPWD\r\nTYPE I\r\nSIZE hello.txt\r\nNOOP\r\n")
    got = [c.reply()[:3] for _ in range(6)]
    assert got == ["331", "230", "257", "200", "213", "200"], got
    expect(c.cmd("X" * 5000), "500", "overlong line")
    expect(c.cmd("NOOP"), "200", "still in sync after the overlong line")
else:
    raise SystemExit("unknown case " + case)
print("ok")
