"""tcpdump sessions for verify: one ``tcpdump -U --immediate-mode`` per capture point, each inside its
lab namespace, confirmed ("listening on") before any probe is sent, stopped with SIGINT; every
process is killed on error or Ctrl-C (:class:`CaptureSession` is a context manager)."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from meshpkt.errors import LabError, ToolMissingError


class CaptureSession:
    """Capture at ``points`` (``{"point", "netns", "iface"}``) into ``out/<point>.pcap``.

    ``with CaptureSession(points, out) as cap: ...`` starts every tcpdump and waits until each is
    listening; leaving the block stops them (SIGINT, then SIGKILL after ``grace`` seconds).
    """

    def __init__(self, points: list[dict[str, Any]], out: Path, *, snaplen: int = 256, bpf: str = "ip",
                 listen_timeout: float = 10.0) -> None:
        self.points = points
        self.out = out
        self.snaplen = snaplen
        self.bpf = bpf
        self.listen_timeout = listen_timeout
        self.procs: list[tuple[dict[str, Any], subprocess.Popen[bytes]]] = []
        self.stderr: dict[str, bytes] = {}

    def files(self) -> list[tuple[str, Path]]:
        """(point, pcap path) of every started capture."""
        return [(pt["point"], self.out / f"{pt['point']}.pcap") for pt, _ in self.procs]

    def __enter__(self) -> CaptureSession:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop(kill=et is not None)

    def start(self) -> None:
        """Start every tcpdump; return once all are listening (LabError if one fails)."""
        if shutil.which("tcpdump") is None:
            raise ToolMissingError("tcpdump is not installed (needed by meshpkt verify)")
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            for pt in self.points:
                argv = ["ip", "netns", "exec", pt["netns"], "tcpdump", "-i", pt["iface"], "-U", "--immediate-mode",
                        "-n", "-s", str(self.snaplen), "-Z", "root", "-w", str(self.out / f"{pt['point']}.pcap"),
                        self.bpf]
                pr = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
                self.procs.append((pt, pr))
            self._wait_listening()
        except BaseException:
            self.stop(kill=True)
            raise

    def _wait_listening(self) -> None:
        sel = selectors.DefaultSelector()
        bufs: dict[int, bytearray] = {}
        waiting: dict[int, dict[str, Any]] = {}
        for pt, pr in self.procs:
            assert pr.stderr is not None
            os.set_blocking(pr.stderr.fileno(), False)
            sel.register(pr.stderr, selectors.EVENT_READ, (pt, pr))
            bufs[pr.pid] = bytearray()
            waiting[pr.pid] = pt
        deadline = time.monotonic() + self.listen_timeout
        try:
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"tcpdump did not start listening at {next(iter(waiting.values()))['point']}")
                for key, _ in sel.select(timeout=min(left, 0.2)):
                    pt, pr = key.data
                    chunk = os.read(key.fd, 65536)
                    bufs[pr.pid] += chunk
                    if b"listening on" in bufs[pr.pid]:
                        waiting.pop(pr.pid, None)
                        sel.unregister(key.fileobj)
                    elif not chunk:
                        sel.unregister(key.fileobj)
                        msg = bufs[pr.pid].decode(errors="replace").strip().splitlines()
                        raise LabError(f"tcpdump at {pt['point']} failed: {msg[-1] if msg else 'exited'}")
        finally:
            sel.close()
            for pid, b in bufs.items():
                self.stderr[str(pid)] = bytes(b)

    def stop(self, kill: bool = False, grace: float = 3.0) -> None:
        """Stop every tcpdump (SIGINT so the last packets are flushed; SIGKILL with ``kill`` or after
        ``grace`` seconds). Idempotent."""
        for _pt, pr in self.procs:
            if pr.poll() is None:
                try:
                    os.killpg(pr.pid, signal.SIGKILL if kill else signal.SIGINT)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + grace
        for _pt, pr in self.procs:
            try:
                pr.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(pr.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                pr.wait()
            if pr.stderr is not None and not pr.stderr.closed:
                pr.stderr.close()
