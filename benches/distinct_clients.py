#!/usr/bin/env python3
"""Memory under a flood of distinct clients: sends N requests to the gateway, each from its own
loopback source address (any address in 127.0.0.0/8 can be a source on Linux), and prints the
gateway's RSS before and after. The limiters must stay bounded (4,096 tracked keys each), so RSS
should level off instead of growing with N.

    benches/distinct_clients.py PID ADDR PATH SECRET [N=50000]
"""
import socket
import sys


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    pid, addr, path, secret = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 50_000
    host, port = addr.rsplit(":", 1)
    body = b'{"action":"list_flows"}'
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {secret}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    before = rss_kib(pid)
    statuses = {}
    for i in range(count):
        source = f"127.{1 + (i >> 16) % 254}.{(i >> 8) & 255}.{i & 255 or 1}"
        with socket.create_connection((host, int(port)), source_address=(source, 0)) as conn:
            conn.sendall(request)
            head = conn.recv(64)
        status = head.split(b" ", 2)[1].decode() if head else "none"
        statuses[status] = statuses.get(status, 0) + 1
    after = rss_kib(pid)
    print(f"requests={count} distinct_sources={count} statuses={statuses} "
          f"rss_before_kib={before} rss_after_kib={after}")


if __name__ == "__main__":
    main()
