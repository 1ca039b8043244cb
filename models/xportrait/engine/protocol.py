"""The torch worker's wire format (Unix socket, both directions):

    u32 LE header length | u32 LE payload length | header (msgpack map) | payload (raw bytes)

Requests carry {op, id, ...}; replies {id, ok: true, ...} or {id, ok: false, error: {code,
message}}. Only frames travel as payload: the aligned driving crop (uint8 RGB, S×S×3) up and the
decoded frame down. server/renderers/xportrait-lcm/torch/protocol.ts is the other side.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Optional, Tuple

import msgpack

PREFIX = struct.Struct("<II")
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024


class ProtocolError(Exception):
    """A message that cannot be framed (the connection is closed after the reply)."""


class BadRequest(Exception):
    """A well-framed message the worker refuses (an error reply; the connection stays open)."""

    def __init__(self, message: str, code: str = "bad_request"):
        super().__init__(message)
        self.code = code


def encode(header: dict, payload: bytes = b"") -> bytes:
    h = msgpack.packb(header, use_bin_type=True)
    return PREFIX.pack(len(h), len(payload)) + h + bytes(payload)


def _read_exact(sock: socket.socket, n: int) -> Optional[bytearray]:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return buf


def read_message(sock: socket.socket) -> Optional[Tuple[dict, bytearray]]:
    """The next message, or None at a clean end of stream. Raises ProtocolError for a message cut
    off by the end of stream, oversized lengths, or a header that is not a msgpack map with an op."""
    pre = _read_exact(sock, PREFIX.size)
    if pre is None:
        return None
    hlen, plen = PREFIX.unpack(pre)
    if hlen == 0 or hlen > MAX_HEADER:
        raise ProtocolError(f"header length {hlen} outside 1..{MAX_HEADER}")
    if plen > MAX_PAYLOAD:
        raise ProtocolError(f"payload length {plen} over {MAX_PAYLOAD}")
    raw = _read_exact(sock, hlen)
    payload = _read_exact(sock, plen) if plen else bytearray()
    if raw is None or payload is None:
        raise ProtocolError("message truncated by the end of the stream")
    try:
        header = msgpack.unpackb(bytes(raw), raw=False)
    except Exception as e:  # noqa: BLE001 — any decoding failure is the sender's
        raise BadRequest(f"header is not msgpack: {e}") from e
    if not isinstance(header, dict):
        raise BadRequest("header must be a msgpack map")
    return header, payload


class Connection:
    """One client socket; replies may be sent from any thread."""

    def __init__(self, sock: socket.socket, cid: int):
        self.sock = sock
        self.id = cid
        self.lock = threading.Lock()
        self.closed = False
        self.streams = set()

    def send(self, header: dict, payload: bytes = b"") -> bool:
        data = encode(header, payload)
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def reply(self, req_id, payload: bytes = b"", **fields) -> bool:
        return self.send({"id": req_id, "ok": True, **fields}, payload)

    def error(self, req_id, code: str, message: str) -> bool:
        return self.send({"id": req_id, "ok": False, "error": {"code": code, "message": message}})

    def close(self):
        with self.lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
