#!/usr/bin/env python3
# bench/http_load.py PORT N [CONNS [DEPTH]]: exactly N GET requests to
# 127.0.0.1:PORT over CONNS (1) kept-alive connections, DEPTH (1) pipelined per
# send, every response checked to be "hello\n" (with Content-Length, or chunked
# as nginx's ngx.say sends it; exit 1 otherwise). For bench/http_callgrind: a fixed count, not a rate.
import selectors, socket, sys

port, n = int(sys.argv[1]), int(sys.argv[2])
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1
depth = int(sys.argv[4]) if len(sys.argv) > 4 else 1
req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
sel = selectors.DefaultSelector()
left = n
state = {}
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state[s] = [b"", 0]
    sel.register(s, selectors.EVENT_READ)

def send(s):
    global left
    k = min(depth, left)
    if k:
        left -= k
        state[s][1] = k
        s.sendall(req * k)

for s in list(state):
    send(s)
done = 0
while done < n:
    for key, _ in sel.select(30):
        s = key.fileobj
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed")
        st = state[s]
        st[0] += data
        while True:
            i = st[0].find(b"\r\n\r\n")
            if i < 0:
                break
            head = st[0][:i + 2]
            if b"Content-Length: 6\r\n" in head:
                end = i + 10
                body = st[0][i + 4:end]
            elif b"Transfer-Encoding: chunked\r\n" in head:  # nginx's ngx.say
                j = st[0].find(b"\r\n0\r\n\r\n", i + 4)
                if j < 0:
                    break
                end = j + 7
                body = st[0][i + 4:end]
                body = b"hello\n" if body == b"6\r\nhello\n\r\n0\r\n\r\n" else body
            else:
                sys.exit("bad response: %r" % st[0][:200])
            if len(st[0]) < end:
                break
            if body != b"hello\n":
                sys.exit("bad response: %r" % st[0][:200])
            st[0] = st[0][end:]
            st[1] -= 1
            done += 1
        if st[1] == 0:
            send(s)
print("requests=%d" % done)
