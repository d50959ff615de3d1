# Python ftplib against Ferry: FEAT/OPTS UTF8, MKD/RMD with '"' (257 doubling), a UTF-8 name,
# MLSD facts, SIZE/MDTM/MFMT, REST+RETR, STOU, RNFR/RNTO, DELE, STAT, TYPE A on the wire, ABOR.
import ftplib, io, os, sys, time

host, port, user, pw, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
up = os.path.join(root, "upload")
f = ftplib.FTP()
f.connect(host, port, timeout=20)
f.login(user, pw)

feat = f.sendcmd("FEAT")
assert "MLST" in feat and "UTF8" in feat and "REST STREAM" in feat and "EPSV" in feat, feat
assert f.sendcmd("OPTS UTF8 ON").startswith("200")
f.cwd("/upload")

r = f.sendcmd('MKD we"ird')
assert r.startswith('257 "/upload/we""ird"'), r
assert os.path.isdir(os.path.join(up, 'we"ird'))
f.rmd('we"ird')
assert not os.path.exists(os.path.join(up, 'we"ird'))

name = "grüße-日本.bin"
data = os.urandom(700_000)
f.storbinary("STOR " + name, io.BytesIO(data))
assert open(os.path.join(up, name), "rb").read() == data

facts = dict(f.mlsd())
assert facts[name]["type"] == "file" and int(facts[name]["size"]) == len(data), facts[name]
assert "modify" in facts[name] and "perm" in facts[name] and "unique" in facts[name], facts[name]
# SIZE is the file's length in either TYPE (as vsftpd): mlsd() left TYPE A.
assert f.size(name) == len(data)
f.voidcmd("TYPE I")
assert f.size(name) == len(data)
assert f.sendcmd("MDTM " + name).startswith("213 ")
r = f.sendcmd("MFMT 20200102030405 " + name)
assert r.startswith("213"), r
assert f.sendcmd("MDTM " + name) == "213 20200102030405"
assert int(os.stat(os.path.join(up, name)).st_mtime) == 1577934245

buf = io.BytesIO()
f.retrbinary("RETR " + name, buf.write, rest=12345)
assert buf.getvalue() == data[12345:], "REST+RETR"

r1 = f.storbinary("STOU", io.BytesIO(b"one"))
f.storbinary("STOU", io.BytesIO(b"two"))
names = sorted(n for n in os.listdir(up) if n.startswith("file"))
assert names == ["file", "file.1"], names
assert open(os.path.join(up, "file"), "rb").read() == b"one"

f.rename("file.1", "renamed")
assert open(os.path.join(up, "renamed"), "rb").read() == b"two"
f.delete("renamed")
f.delete("file")
assert not os.path.exists(os.path.join(up, "renamed"))

assert f.sendcmd("STAT").startswith("211")
st = f.sendcmd("STAT /upload")
assert st.startswith("213") and name in st, st

# TYPE A: LF on disk goes out as CRLF; CRLF coming in is stored as LF.
f.sendcmd("TYPE A")
conn = f.transfercmd("RETR /hello.txt")
got = b""
while chunk := conn.recv(65536):
    got += chunk
conn.close()
f.voidresp()
assert got == b"hello from ferry\r\n", got
conn = f.transfercmd("STOR asc.txt")
conn.sendall(b"a\r\nb\r\n")
conn.close()
f.voidresp()
assert open(os.path.join(up, "asc.txt"), "rb").read() == b"a\nb\n"
f.sendcmd("TYPE I")

# ABOR mid-transfer (ftplib sends it as urgent data): 426 for the transfer, then 226.
conn = f.transfercmd("RETR /big.bin")
conn.recv(65536)
resp = f.abort()
assert resp.startswith("426"), resp
conn.close()
second = f.getresp()
assert second.startswith("226"), second
assert f.sendcmd("NOOP").startswith("200")
f.quit()
print("ok")
