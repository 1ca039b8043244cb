"""A Python client of the torch worker's protocol (protocol.py) — what the GPU check and the
Python tests use where the Node server is not there. One request at a time per client; open
several clients for several concurrent sessions.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

from .protocol import encode, read_message

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class WorkerError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    def __init__(self, path: str, timeout: float = 600.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_id = 1
        self.sent_bytes = 0
        self.received_bytes = 0

    def call(self, op: str, payload: bytes = b"", **fields) -> Tuple[dict, bytes]:
        rid = self.next_id
        self.next_id += 1
        data = encode({"op": op, "id": rid, **fields}, payload)
        self.sent_bytes += len(data)
        self.sock.sendall(data)
        msg = read_message(self.sock)
        if msg is None:
            raise WorkerError("closed", "the worker closed the connection")
        header, body = msg
        self.received_bytes += 8 + len(body)
        if not header.get("ok"):
            err = header.get("error") or {}
            raise WorkerError(err.get("code", "internal"), err.get("message", "?"))
        return header, bytes(body)

    def open(self, **options) -> int:
        return self.call("open", options=options)[0]["stream"]

    def encode_reference(self, stream: int, crop: bytes) -> int:
        return self.call("encode_reference", crop, stream=stream)[0]["ref"]

    def use_reference(self, stream: int, ref: int):
        self.call("use_reference", stream=stream, ref=ref)

    def push(self, stream: int, drive: bytes, boxes: Sequence[Sequence[int]] = ()) -> Tuple[dict, bytes]:
        return self.call("push", drive, stream=stream, boxes=[list(b) for b in boxes])

    def close(self):
        self.sock.close()


def start_worker(sock_path: str, args: List[str], python: Optional[str] = None, log_path: Optional[str] = None,
                 start_timeout: float = 900.0) -> subprocess.Popen:
    """Starts `python -m models.xportrait.engine.serve --socket PATH ARGS…` and waits until it is ready."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    err = open(log_path, "ab") if log_path else None
    proc = subprocess.Popen([python or sys.executable, "-m", "models.xportrait.engine.serve", "--socket", sock_path, *args],
                            cwd=ROOT, env=env, stderr=err)
    deadline = time.time() + start_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode} while starting"
                               + (f" (see {log_path})" if log_path else ""))
        try:
            c = Client(sock_path, timeout=10)
            h, _ = c.call("ping")
            c.close()
            if h.get("ready"):
                return proc
            if h.get("error"):
                raise RuntimeError(f"the worker failed to load: {h['error']}")
        except (FileNotFoundError, ConnectionRefusedError, socket.timeout):
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the worker was not ready within {start_timeout:.0f} s")


def stop_worker(proc: subprocess.Popen, timeout: float = 10.0):
    """SIGTERM (the worker removes its socket), then SIGKILL if it does not go."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
