"""The process each lab task runs (stdlib only; started as ``python3 -I agent.py CONFIG.json`` inside the
task's namespace with ``ip netns exec``).

- an HTTP server on each target port answering every GET with
  ``Host IP is <node underlay IP>, task <task name> <local IP of the connection>\\n``
  (like the seeds' nginx page); ``GET /bytes/<n>`` answers that line followed by ``n`` more bytes
  (large responses, for segmentation offload and loss tests);
- a UDP identity server on each published UDP target port (on each of the task's addresses): any
  datagram is answered with ``Host IP is <node underlay IP>, task <task name> <local IP>\n``;
- Docker's embedded DNS: UDP and TCP on ``127.0.0.11:<port>`` (the task's nat DOCKER_OUTPUT rules DNAT
  ``127.0.0.11:53`` there), answering ``<service>`` and ``tasks.<service>`` A queries, TTL 600, shuffled,
  NXDOMAIN for unknown names, an empty NOERROR answer for other types of known names.

It prints ``ready`` on stdout once every socket is bound, then closes stdout.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTL = 600


# ---------------------------------------------------------------------------- DNS (pure)
def parse_question(msg: bytes) -> tuple[int, int, str, int, int, int]:
    """Return (id, flags, qname, qtype, qclass, end offset of the question). Raises ValueError."""
    if len(msg) < 12:
        raise ValueError("short DNS message")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd < 1:
        raise ValueError("no question")
    off = 12
    labels = []
    while True:
        if off >= len(msg):
            raise ValueError("truncated name")
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    if off + 4 > len(msg):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return qid, flags, ".".join(labels), qtype, qclass, off + 4


def dns_response(query: bytes, records: dict[str, list[str]], *, shuffle: bool = True,
                 rng: random.Random | None = None) -> bytes | None:
    """Build the embedded-DNS answer to ``query`` from ``records`` (name -> IPv4 list); None if unparsable."""
    try:
        qid, flags, qname, qtype, qclass, end = parse_question(query)
    except ValueError:
        return None
    name = qname.lower().rstrip(".")
    ips = records.get(name)
    rd = flags & 0x0100
    if ips is None:
        rcode, answers = 3, []  # NXDOMAIN
    elif qtype in (1, 255) and qclass == 1:
        rcode, answers = 0, list(ips)
        if shuffle:
            (rng or random).shuffle(answers)
    else:
        rcode, answers = 0, []
    rflags = 0x8000 | rd | 0x0080 | rcode  # QR, RD copied, RA
    out = bytearray(struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0))
    out += query[12:end]
    for ip in answers:
        out += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + ipaddress.IPv4Address(ip).packed
    return bytes(out)


# ---------------------------------------------------------------------------- servers
def _extra_bytes(path: str) -> int:
    """``/bytes/<n>``: n extra bytes after the identity line (at most 1 GiB); other paths: none."""
    parts = path.split("?")[0].strip("/").split("/")
    if len(parts) == 2 and parts[0] == "bytes" and parts[1].isdigit():
        return min(int(parts[1]), 1 << 30)
    return 0


def _http_handler(node_ip: str, task: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "meshpkt-lab"
        sys_version = ""

        def _answer(self, body: bool) -> None:
            # one segment for headers + body, like nginx's small responses
            local = self.connection.getsockname()[0]
            data = f"Host IP is {node_ip}, task {task} {local}\n".encode()
            extra = _extra_bytes(self.path)
            head = ("HTTP/1.1 200 OK\r\nServer: meshpkt-lab\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
            self.close_connection = True
            if not extra:
                self.wfile.write(head + (data if body else b""))
                return
            head = head.replace(f"Content-Length: {len(data)}".encode(), f"Content-Length: {len(data) + extra}".encode())
            self.wfile.write(head + (data if body else b""))
            if body:
                chunk = b"x" * 65536
                for start in range(0, extra, len(chunk)):
                    self.wfile.write(chunk[: min(len(chunk), extra - start)])

        def do_GET(self) -> None:  # noqa: N802
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


def _udp_identity(sock: socket.socket, node_ip: str, task: str) -> None:
    """Answer every datagram on ``sock`` with the task's identity line (from the address it arrived on)."""
    line = f"Host IP is {node_ip}, task {task} {sock.getsockname()[0]}\n".encode()
    while True:
        try:
            _q, addr = sock.recvfrom(65535)
        except OSError:
            return
        try:
            sock.sendto(line, addr)
        except OSError:
            pass


def _udp_identity_servers(cfg: dict[str, Any]) -> list[socket.socket]:
    """One bound UDP socket per (task address, published UDP target port)."""
    socks = []
    for port in cfg.get("udp_ports", []):
        for ip in cfg.get("udp_ips", []):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, int(port)))
            socks.append(s)
    return socks


class _HTTP6(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def _http6_servers(cfg: dict[str, Any]) -> list[Any]:
    """Dual-stack overlays: the same HTTP server on ``[::]`` for the task's IPv6 addresses."""
    if not cfg.get("ips6"):
        return []
    return [_HTTP6(("::", port), _http_handler(cfg["node_ip"], cfg["task"])) for port in cfg["ports"]]


class _TCPDNS(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _dns_servers(cfg: dict[str, Any], records: dict[str, list[str]]) -> list[Any]:
    """The embedded DNS on ``dns_ip:dns_port``: a TCP server (returned, to be served) and a UDP loop (started)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind((cfg["dns_ip"], cfg["dns_port"]))

    class TCPHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                hdr = self.request.recv(2)
                if len(hdr) < 2:
                    return
                n = struct.unpack("!H", hdr)[0]
                q = b""
                while len(q) < n:
                    chunk = self.request.recv(n - len(q))
                    if not chunk:
                        return
                    q += chunk
                r = dns_response(q, records)
                if r:
                    self.request.sendall(struct.pack("!H", len(r)) + r)
            except OSError:
                return

    def serve_udp() -> None:
        while True:
            try:
                q, addr = udp.recvfrom(4096)
            except OSError:
                return
            r = dns_response(q, records)
            if r:
                try:
                    udp.sendto(r, addr)
                except OSError:
                    pass

    threading.Thread(target=serve_udp, daemon=True).start()
    return [_TCPDNS((cfg["dns_ip"], cfg["dns_port"]), TCPHandler)]


def main(argv: list[str]) -> int:
    """Run the agent described by the JSON file ``argv[0]``."""
    with open(argv[0]) as fh:
        cfg = json.load(fh)
    records: dict[str, list[str]] = cfg.get("records", {})
    servers: list[Any] = []
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    for port in cfg["ports"]:
        servers.append(ThreadingHTTPServer(("0.0.0.0", port), _http_handler(cfg["node_ip"], cfg["task"])))
    servers += _dns_servers(cfg, records) + _http6_servers(cfg)
    for sock in _udp_identity_servers(cfg):
        threading.Thread(target=_udp_identity, args=(sock, cfg["node_ip"], cfg["task"]), daemon=True).start()
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
