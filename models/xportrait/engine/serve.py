"""The torch engine's worker process: one per device, started and supervised by the server
(server/renderers/xportrait-lcm/torch/host.ts).

  python3 -m models.xportrait.engine.serve --socket /tmp/x.sock --weights tiny|random|FILE --device cpu|cuda [...]
  python3 -m models.xportrait.engine.serve --check --device cuda      preflight: prints one JSON line

Threads: the engine thread (dispatch.py) runs every graph; one reader thread per connection
parses messages and answers `ping` itself — so a heartbeat is answered while a graph runs, and
its `busy_ms` says for how long the engine thread has been inside one batch, not counting time it
waited for a CPU (the supervisor counts a batch that never ends, or a ping that is never answered,
as a hang). The socket is bound before the model loads, so the supervisor sees "loading" instead of
silence.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time


def check(device: str) -> int:
    """Preflight: can this interpreter run the engine on `device`? One JSON line on stdout."""
    res = {"ok": False, "python": sys.version.split()[0], "executable": sys.executable}
    for mod in ("numpy", "msgpack", "torch"):
        try:
            m = __import__(mod)
            res[mod] = getattr(m, "__version__", None) or ".".join(map(str, getattr(m, "version", ())))
        except Exception as e:  # noqa: BLE001 — report any import failure as such
            res["error"] = f"cannot import {mod}: {type(e).__name__}: {e}"
            res["missing"] = mod
            print(json.dumps(res), flush=True)
            return 2
    import torch
    res["cuda"] = bool(torch.cuda.is_available())
    res["sdpa"] = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    if device.startswith("cuda"):
        if not res["cuda"]:
            res["error"] = (f"--device {device}: torch {torch.__version__} sees no CUDA device "
                            f"(torch.cuda.is_available() is False)")
            res["missing"] = "cuda"
            print(json.dumps(res), flush=True)
            return 2
        res["device_name"] = torch.cuda.get_device_name(torch.device(device))
    res["ok"] = True
    print(json.dumps(res), flush=True)
    return 0


def _die_with_parent():
    """Exit when the server that started us dies (Linux: the kernel sends SIGTERM)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 — not Linux: the watchdog below still notices
        pass
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Worker:
    def __init__(self, args):
        self.args = args
        self.ready = threading.Event()
        self.error = None
        self.dispatcher = None
        self.next_conn = 1

    def log(self, msg: str):
        print(f"[xportrait-torch {os.getpid()}] {msg}", file=sys.stderr, flush=True)

    def load(self):
        import torch
        from .dispatch import Dispatcher
        from .core import Engine
        from .weights import load_model
        a = self.args
        if a.threads:
            torch.set_num_threads(a.threads)
        dtype = {"fp16": torch.float16, "fp32": torch.float32}[a.dtype or ("fp16" if a.device.startswith("cuda") else "fp32")]
        lm = load_model(a.weights, seed=a.seed, image_size=a.image_size, lora=a.lcm_lora, lora_scale=a.lora_scale,
                        context=a.context, taesd=a.taesd, device=a.device, log=self.log)
        engine = Engine(lm, device=a.device, dtype=dtype, sink=a.sink, ring=a.ring,
                        fused_attention=not a.no_fused_attention, log=self.log)
        if a.compile:
            from .graphs import compile_modules
            compile_modules(engine, self.log)
        if a.device.startswith("cuda") and a.cuda_graphs == "on":
            from .graphs import GraphCache
            engine.graphs = GraphCache(engine, self.log)
        self.dispatcher = Dispatcher(engine, batch_wait_ms=a.batch_wait_ms, debug_ops=a.debug_ops, log=self.log)
        t0 = time.time()
        self.dispatcher.warm()
        self.log(f"warmed up in {time.time() - t0:.1f} s")
        info = self.dispatcher.info()
        self.log(f"ready: {json.dumps(info)}")

    def ping(self) -> dict:
        d = self.dispatcher
        st = {"ready": self.ready.is_set(), "pid": os.getpid(), "error": self.error}
        if d is not None and self.ready.is_set():
            busy, waited = d.busy.read()
            st.update(busy_ms=busy, cpu_wait_ms=waited, warming=d.e.warming, status=d.status())
        else:
            st.update(busy_ms=0.0, cpu_wait_ms=0.0)
        return st

    def serve_conn(self, sock: socket.socket, cid: int):
        from .protocol import BadRequest, Connection, ProtocolError, read_message
        conn = Connection(sock, cid)
        try:
            while True:
                try:
                    msg = read_message(sock)
                except BadRequest as e:
                    conn.error(None, e.code, str(e))
                    continue
                except ProtocolError as e:
                    conn.error(None, "bad_request", str(e))
                    break
                if msg is None:
                    break
                header, payload = msg
                if header.get("op") == "ping":
                    conn.reply(header.get("id"), **self.ping())
                    continue
                if not self.ready.wait(timeout=None if self.error is None else 0):
                    conn.error(header.get("id"), "not_ready", self.error or "loading")
                    continue
                self.dispatcher.submit(conn, header, payload)
        except OSError:
            pass
        finally:
            conn.close()
            if self.dispatcher is not None:
                self.dispatcher.closed(conn)

    def accept(self, server: socket.socket):
        while True:
            sock, _ = server.accept()
            self.next_conn += 1
            threading.Thread(target=self.serve_conn, args=(sock, self.next_conn), name="conn", daemon=True).start()

    def run(self) -> int:
        a = self.args
        if os.path.exists(a.socket):
            os.unlink(a.socket)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(a.socket)

        def stop(signum, frame):
            if os.path.exists(a.socket):
                os.unlink(a.socket)
            os._exit(0)
        signal.signal(signal.SIGTERM, stop)
        server.listen(64)
        threading.Thread(target=self.accept, args=(server,), name="accept", daemon=True).start()
        try:
            self.load()
        except Exception as e:  # noqa: BLE001 — reported to the supervisor, then exit
            self.error = f"{type(e).__name__}: {e}"
            self.log(f"loading failed: {self.error}")
            time.sleep(0.5)   # let a pending ping see the error before the socket goes
            os.unlink(a.socket)
            return 3
        self.ready.set()
        try:
            self.dispatcher.loop()
        finally:
            if os.path.exists(a.socket):
                os.unlink(a.socket)
        return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m models.xportrait.engine.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="preflight only: print what this interpreter has")
    ap.add_argument("--socket", help="Unix socket path to listen on")
    ap.add_argument("--weights", default="tiny", help="tiny | random | checkpoint FILE")
    ap.add_argument("--seed", type=int, default=1, help="seed of tiny/random weights")
    ap.add_argument("--image-size", type=int, default=512, help="random/FILE: image size (tiny is 64)")
    ap.add_argument("--lcm-lora", default=None)
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--context", default=None, help="empty-prompt CLIP embedding (with a checkpoint FILE)")
    ap.add_argument("--taesd", default=None, help="TAESD decoder weights (with a checkpoint FILE)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default=None)
    ap.add_argument("--sink", type=int, default=1)
    ap.add_argument("--ring", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--batch-wait-ms", type=float, default=0.0,
                    help="after a frame arrives, wait up to this long for the other streams' frames")
    ap.add_argument("--cuda-graphs", choices=["on", "off"], default="on")
    ap.add_argument("--compile", action="store_true", help="torch.compile the ResBlocks and feed-forwards (torch >= 2)")
    ap.add_argument("--no-fused-attention", action="store_true")
    ap.add_argument("--debug-ops", action="store_true", help="accept the `debug` op (fault tests)")
    a = ap.parse_args(argv)
    if a.check:
        return check(a.device)
    if not a.socket:
        ap.error("--socket is required")
    _die_with_parent()
    # A terminal's Ctrl+C goes to the whole process group, this worker included. The server stops it
    # itself (SIGTERM) as it shuts down, in order; dying on the SIGINT printed a traceback on every
    # Ctrl+C, beside the server's own shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return Worker(a).run()


if __name__ == "__main__":
    sys.exit(main())
