#!/usr/bin/env python3
# bench/http_idle.py PORT N PIDFILE_OR_PID: open N keep-alive connections to
# 127.0.0.1:PORT, make one GET on each, then measure the server's RSS
# (VmRSS of PID) before and after; prints "conns=N rss_before_kib=.. rss_after_kib=.. bytes_per_conn=..".
import socket, sys, time, resource

port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))

def rss():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# warm: one connection, so that lazily made state (Lua code, the pool) counts before
w = socket.create_connection(("127.0.0.1", port)); w.sendall(req); w.recv(4096); w.close()
time.sleep(0.3)
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
for s in socks:
    got = b""
    while b"hello" not in got:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed early")
        got += chunk
time.sleep(0.5)
after = rss()
print("conns=%d rss_before_kib=%d rss_after_kib=%d bytes_per_conn=%d" % (n, before, after, (after - before) * 1024 // n))
for s in socks:
    s.close()
