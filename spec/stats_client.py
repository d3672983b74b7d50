# spec/stats_client.py PORT N RESETS SIZE: N connections to an echo server, one
# after the other; each sends SIZE bytes and reads them back, then closes: the
# first RESETS with SO_LINGER 0 (an RST, no FIN), the others normally. Prints
# "done N". Every socket operation has a timeout.
import socket
import struct
import sys

port, n, resets, size = (int(a) for a in sys.argv[1:5])
payload = b"x" * size
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    got = 0
    while got < size:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed early")
        got += len(chunk)
    if i < resets:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("done", n)
