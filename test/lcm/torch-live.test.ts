/**
 * The torch engine in a live server (run in this process so the test reaches the supervised
 * worker process): `--engine torch --weights tiny --device cpu` serves two WebRTC sessions with
 * frames of the output size; the worker killed → restarted, both sessions re-attach and resume
 * without a loop-worker restart (counted in metrics); the worker hung (SIGSTOP) → detected by
 * the heartbeat, killed and restarted, sessions resume; bad messages on the worker's socket get
 * error replies while a session keeps streaming; a Python without torch, or a CUDA device that is
 * not there, is a clear error at start. Not hangs: this process stalled while the worker answered,
 * and a batch slow only because it waits for a CPU (models/xportrait/engine/busy.py).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { lcmDefaults, loadConfig, type Config } from '../../server/config.ts';
import { createLogger } from '../../server/log.ts';
import { registry } from '../../server/metrics.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { ensureTorchWorker, preflight, torchWorkerHosts } from '../../server/renderers/xportrait-lcm/torch/host.ts';
import { startPeer, type Peer } from '../support/wrtc-peer.ts';
import { metricValue, waitUntil } from '../support/wait.ts';
import { PY, runPy, torchSkipReason } from './helpers.ts';
import { loadImage } from '../../eval/make-driving.ts';
import { allocI420, type I420Frame } from '../../server/media/frame.ts';
import { cropScaleI420, rgbaToI420 } from '../../server/media/convert.ts';

const skip = torchSkipReason();
if (skip) console.log(`# skipping torch engine live tests: ${skip}`);

let server: RunningServer;
let a: Peer;
let b: Peer;
const work = mkdtempSync(join(tmpdir(), 'xpl-torch-live-'));

const config = (extra: string[]): Config => {
  const parsed = loadConfig(['--port', '0', '--renderer', 'xportrait-lcm', '--engine', 'torch', '--weights', 'tiny', '--device', 'cpu', '--python', PY, '--output', '256x192', '--lcm-steps', '2', '--lcm-skip', '0', '--lcm-threads', '1', ...extra], {});
  assert.equal(parsed.help, false);
  return (parsed as { config: Config }).config;
};

async function metric(name: string): Promise<number> {
  return metricValue(await registry.metrics(), name) ?? 0;
}

const workerReady = (): Promise<void> => waitUntil(async () => (await metric('xpl_lcm_torch_workers')) === 1, 60_000, 'the torch worker ready');

const resumes = async (peers: Peer[], n: number): Promise<void> => {
  const at = peers.map((p) => p.stats().received);
  await Promise.all(peers.map((p, i) => p.waitFor((s) => s.received >= at[i] + n, 60_000)));
};

// the fixture portrait as a still driving video (a face, so frames go through the engine), with a
// little luma noise so frames differ
let still: I420Frame;
const producer = (frame: I420Frame, seq: number): void => {
  frame.data.set(still.data);
  const y = frame.width * frame.height;
  for (let i = seq % 7; i < y; i += 97) frame.data[i] = Math.min(255, frame.data[i] + 3);
};

before(async () => {
  if (skip) return;
  const rgba = await loadImage(join(import.meta.dirname, '..', 'fixtures', 'astronaut.png'));
  const full = allocI420(rgba.width & ~1, rgba.height & ~1);
  rgbaToI420(rgba, full);
  still = allocI420(320, 240);
  cropScaleI420(full, still, 'cover');
  // a hang is a batch over 6 s (a tiny batch takes ~50 ms; the margin is for a busy machine),
  // and loop workers wait up to 20 s for a frame, so a stopped worker is replaced before they give up
  server = await startServer(config(['--lcm-hang-timeout', '6', '--render-timeout', '20']), createLogger('warn'));
  a = await startPeer({ baseUrl: server.url, width: 320, height: 240, fps: 15, producer, decodeIds: false });
  b = await startPeer({ baseUrl: server.url, width: 320, height: 240, fps: 15, producer, decodeIds: false });
});

after(async () => {
  await a?.close();
  await b?.close();
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

test('--engine torch --weights tiny --device cpu: two live sessions get frames of the output size from one worker', { skip, timeout: 120_000 }, async () => {
  const [sa, sb] = await Promise.all([a.waitFor((s) => s.received >= 10, 60_000), b.waitFor((s) => s.received >= 10, 60_000)]);
  for (const s of [sa, sb]) assert.deepEqual(s.sizes, ['256x192']);
  assert.equal(torchWorkerHosts().length, 1);
  await workerReady();
  await waitUntil(async () => (await metric('xpl_lcm_torch_streams')) === 2, 10_000, 'both streams reported by the heartbeat');
  await waitUntil(async () => (await metric('xpl_lcm_torch_calls_total')) > 0, 10_000, 'frames through the engine');
});

test('worker killed: restarted, both sessions re-attach and resume, no loop worker restarted', { skip, timeout: 120_000 }, async () => {
  await workerReady();
  const host = torchWorkerHosts()[0];
  const pid = host.pid!;
  const exits = await metric('xpl_lcm_torch_restarts_total\\{reason="exit"\\}');
  const renders = await metric('xpl_worker_restarts_total\\{worker="loop"\\}');
  process.kill(pid, 'SIGKILL');
  await waitUntil(() => host.pid !== undefined && host.pid !== pid, 30_000, 'a new worker process');
  const calls = await metric('xpl_lcm_torch_calls_total');
  await resumes([a, b], 10);
  await waitUntil(async () => (await metric('xpl_lcm_torch_calls_total')) > calls, 30_000, 'frames through the new worker');
  assert.equal(await metric('xpl_lcm_torch_restarts_total\\{reason="exit"\\}'), exits + 1);
  assert.equal(await metric('xpl_worker_restarts_total\\{worker="loop"\\}'), renders, 'the sessions re-attached by themselves');
  await waitUntil(async () => (await metric('xpl_lcm_torch_streams')) === 2, 10_000, 'both streams re-opened');
  assert.equal(server.sessions.size, 2);
});

test('worker hung (stopped): the heartbeat detects it, it is killed and restarted, sessions resume', { skip, timeout: 120_000 }, async () => {
  await workerReady();
  const host = torchWorkerHosts()[0];
  const pid = host.pid!;
  const hung = await metric('xpl_lcm_torch_restarts_total\\{reason="hung"\\}');
  process.kill(pid, 'SIGSTOP');
  await waitUntil(async () => (await metric('xpl_lcm_torch_restarts_total\\{reason="hung"\\}')) === hung + 1, 30_000, 'the hang to be detected');
  await waitUntil(() => host.pid !== undefined && host.pid !== pid, 30_000, 'a new worker process');
  const calls = await metric('xpl_lcm_torch_calls_total');
  await resumes([a, b], 10);
  await waitUntil(async () => (await metric('xpl_lcm_torch_calls_total')) > calls, 30_000, 'frames through the new worker');
  await waitUntil(async () => (await metric('xpl_lcm_torch_streams')) === 2, 10_000, 'both streams re-opened');
  assert.equal(server.sessions.size, 2);
});

/** Raw bytes on a new connection; resolves with the first `n` reply headers, or 'closed' if it closes first. `end`: half-close after writing. */
function raw(socket: string, bytes: Buffer, n = 1, end = false): Promise<Array<Record<string, unknown>> | 'closed'> {
  return new Promise((resolve) => {
    const c = createConnection(socket);
    let buf = Buffer.alloc(0);
    const got: Array<Record<string, unknown>> = [];
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32LE(0) + buf.readUInt32LE(4)) {
        const h = buf.readUInt32LE(0);
        got.push(decode(buf.subarray(8, 8 + h)) as Record<string, unknown>);
        buf = buf.subarray(8 + h + buf.readUInt32LE(4));
      }
      if (got.length >= n) {
        resolve(got);
        c.destroy();
      }
    });
    c.on('close', () => resolve(got.length ? got : 'closed'));
    c.on('error', () => resolve('closed'));
    if (end) c.end(bytes);
    else c.write(bytes);
  });
}

/** A connection kept open for a request/reply exchange. */
async function conversation(socket: string): Promise<{ ask(bytes: Buffer): Promise<Record<string, any>>; close(): void }> {
  const c = createConnection(socket);
  await new Promise((r) => c.once('connect', r));
  let buf = Buffer.alloc(0);
  const waiting: Array<(h: Record<string, any>) => void> = [];
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32LE(0) + buf.readUInt32LE(4)) {
      const h = buf.readUInt32LE(0);
      waiting.shift()?.(decode(buf.subarray(8, 8 + h)) as Record<string, any>);
      buf = buf.subarray(8 + h + buf.readUInt32LE(4));
    }
  });
  return {
    ask: (bytes) => new Promise((r) => {
      waiting.push(r);
      c.write(bytes);
    }),
    close: () => c.destroy(),
  };
}

const errorOf = (r: Array<Record<string, unknown>> | 'closed', i = 0): { code: string; message: string } => {
  assert.notEqual(r, 'closed', 'the worker replied');
  return (r as Array<{ error: { code: string; message: string } }>)[i].error;
};

function frame(header: Record<string, unknown>, payload = Buffer.alloc(0), declared = payload.length): Buffer {
  const h = Buffer.from(encode(header));
  const pre = Buffer.alloc(8);
  pre.writeUInt32LE(h.length, 0);
  pre.writeUInt32LE(declared, 4);
  return Buffer.concat([pre, h, payload]);
}

test('bad messages get error replies and never disturb the live sessions', { skip, timeout: 120_000 }, async () => {
  await workerReady();
  const host = torchWorkerHosts()[0];
  const pid = host.pid;
  const exits = await metric('xpl_lcm_torch_restarts_total\\{reason="exit"\\}');
  const at = a.stats().received;
  const S3 = 64 * 64 * 3;
  assert.match(errorOf(await raw(host.socket, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc1, 0xc1, 0xc1])]))).message, /not msgpack/);
  assert.deepEqual(errorOf(await raw(host.socket, frame({ op: 'frobnicate', id: 7 }))), { code: 'bad_request', message: "unknown op 'frobnicate'" });
  // on one connection, its own stream: a frame of the wrong size, boxes outside the frame, a push before any reference
  const c = await conversation(host.socket);
  const sid = (await c.ask(frame({ op: 'open', id: 1, options: { steps: 2 } }))).stream;
  assert.match(String(((await c.ask(frame({ op: 'push', id: 2, stream: sid, boxes: [] }, Buffer.alloc(10)))).error as { message: string }).message), /payload must be one 64x64 RGB frame \(12288 bytes\), got 10/);
  assert.match(String(((await c.ask(frame({ op: 'push', id: 3, stream: sid, boxes: [[0, 0, 99, 1]] }, Buffer.alloc(S3)))).error as { message: string }).message), /boxes must be a list/);
  assert.match(String(((await c.ask(frame({ op: 'push', id: 4, stream: sid, boxes: [] }, Buffer.alloc(S3)))).error as { message: string }).message), /push before use_reference/);
  c.close();
  assert.deepEqual(errorOf(await raw(host.socket, frame({ op: 'push', id: 3, stream: 424242, boxes: [] }, Buffer.alloc(S3)))), { code: 'not_found', message: 'unknown stream 424242' });
  assert.match(errorOf(await raw(host.socket, frame({ op: 'open', id: 4, options: { steps: 99 } }))).message, /steps must be 1\.\.8/);
  // declares 1000 payload bytes, sends 4 and ends: the connection is dropped with a reply saying why
  assert.match(errorOf(await raw(host.socket, frame({ op: 'hello', id: 5 }, Buffer.alloc(4), 1000), 1, true)).message, /truncated/);
  assert.match(errorOf(await raw(host.socket, Buffer.from([0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]))).message, /header length/);
  await a.waitFor((st) => st.received >= at + 10, 60_000);
  assert.equal(host.pid, pid, 'the worker survived every bad message');
  assert.equal(await metric('xpl_lcm_torch_restarts_total\\{reason="exit"\\}'), exits);
});

test('a Python without torch, a missing interpreter, or --device cuda without CUDA: a clear error at start', { skip, timeout: 120_000 }, async () => {
  const fake = join(work, 'python-without-torch');
  writeFileSync(fake, `#!${PY}\nimport runpy, sys\nsys.modules["torch"] = None\nmod = sys.argv[2]\nsys.argv = [mod] + sys.argv[3:]\nrunpy.run_module(mod, run_name="__main__", alter_sys=True)\n`);
  chmodSync(fake, 0o755);
  await assert.rejects(startServer(config(['--python', fake]), createLogger('silent')), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'bad_config');
    assert.match(err.message, /cannot import torch/);
    assert.match(err.message, /apt-get install python3-torch/);
    return true;
  });
  await assert.rejects(preflight({ python: join(work, 'no-such-python'), device: 'cpu' }), /no such interpreter.*apt-get install python3-torch python3-numpy python3-msgpack/);
  const cuda = await preflight({ python: PY, device: 'cuda' }).then(() => 'has cuda', (err: Error) => err.message);
  if (cuda !== 'has cuda') assert.match(cuda, /--device cuda: torch .* sees no CUDA device.*install a CUDA build of PyTorch/);
});

test('this process stalled past the hang timeout while a ping was answered: the worker is not killed', { skip, timeout: 120_000 }, async () => {
  // A worker of its own (another seed), with a 2 s hang timeout. Stop it until a ping is out, let
  // it go and stall this thread 2.5 s: the reply waits unread, and the first beat after the stall
  // must not take it for a hang.
  const own = await ensureTorchWorker({ ...lcmDefaults(), engine: 'torch', weights: 'tiny', device: 'cpu', python: PY, threads: 1, seed: 2, hangTimeout: 2 });
  try {
    const pid = own.pid!;
    const hung = await metric('xpl_lcm_torch_restarts_total\\{reason="hung"\\}');
    const outstanding = () => (own as unknown as { pingSent: number }).pingSent !== 0;
    process.kill(pid, 'SIGSTOP');
    try {
      await waitUntil(outstanding, 5_000, 'a ping sent to the stopped worker');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const before = own.status;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2_500);
    await waitUntil(() => own.status !== before, 10_000, 'the ping answered after the stall');
    assert.equal(own.pid, pid, 'the same worker process');
    assert.equal(await metric('xpl_lcm_torch_restarts_total\\{reason="hung"\\}'), hung);
  } finally {
    await own.close();
  }
});

test("a batch slowed by waiting for a CPU is not counted as busy; one that sleeps is (the hang check's clock)", { skip, timeout: 120_000 }, () => {
  // The thread measured shares one CPU with a busy process at nice 19, so it waits for the CPU
  // most of the time; 20 ms of its own work take far longer on the wall clock.
  const script = `
import json, os, subprocess, sys, threading, time
from models.xportrait.engine.busy import BusyClock
cpu = min(os.sched_getaffinity(0))
hog = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\\nwhile True: pass"], stdout=subprocess.PIPE, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
assert hog.stdout.readline().strip() == b"spinning"
out = {}
def run(kind):
    os.sched_setaffinity(0, {cpu})
    if kind == "starved":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    clock = BusyClock()
    clock.start()
    t0, c0 = time.monotonic(), time.thread_time()
    if kind == "starved":
        while time.thread_time() - c0 < 0.02:
            pass
    else:
        time.sleep(0.5)
    busy, waited = clock.read()
    out[kind] = {"wall": (time.monotonic() - t0) * 1000, "busy": busy, "waited": waited, "cpu": (time.thread_time() - c0) * 1000}
    clock.stop()
    out[kind + "_stopped"] = clock.read()
try:
    for kind in ("starved", "sleeping"):
        t = threading.Thread(target=run, args=(kind,))
        t.start()
        t.join()
finally:
    hog.kill()
print(json.dumps(out))
`;
  const r = runPy(['-c', script], 60_000);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, { wall: number; busy: number; waited: number; cpu: number }> & Record<string, unknown>;
  const { starved, sleeping } = out;
  console.log(`# starved: ${starved.cpu.toFixed(0)} ms of work took ${starved.wall.toFixed(0)} ms, busy ${starved.busy.toFixed(0)} ms, waited ${starved.waited.toFixed(0)} ms; sleeping: busy ${sleeping.busy.toFixed(0)} of ${sleeping.wall.toFixed(0)} ms`);
  assert.ok(starved.wall > 4 * starved.cpu, `the set-up starves the thread: ${starved.wall} ms wall for ${starved.cpu} ms of work`);
  assert.ok(starved.busy < starved.cpu + 100, `busy ${starved.busy} ms leaves out the wait (${starved.waited} ms)`);
  assert.ok(starved.waited > 0.5 * starved.wall, `the wait ${starved.waited} ms is most of ${starved.wall} ms`);
  assert.ok(sleeping.busy >= 450, `a sleeping batch counts as busy: ${sleeping.busy} ms`);
  assert.deepEqual(out.starved_stopped, [0, 0]);
});
