/**
 * `npm run bench:loop`: the media loop end to end, side by side with a reference doing the same
 * work. A libwebrtc peer (@roamhq/wrtc) sends a 30 fps pattern whose frames carry ids to
 *   A: the server (passthrough renderer: decode, centre-crop + scale, encode, send back), and
 *   B: the libwebrtc echo (test/support/echo-server.ts, its own process: libwebrtc decode, the
 *      same scale, libwebrtc encode),
 * in turns A B A B …, each turn a fresh process and a fresh peer; with --baseline DIR, the server of
 * another checkout (e.g. an older commit) takes a third turn in each round, for before → after
 * figures measured side by side. Each turn measures the time from
 * the POST to the first returned frame, then (after a warm-up) glass-to-glass latency read from the
 * returned ids, the output frame rate, and the CPU of the process and its children from /proc.
 * Ratios are taken turn by turn (A's turn against the B turn beside it), so a drift in the
 * machine's speed cancels out.
 *
 *   npm run bench:loop -- [--rounds 3] [--duration 15] [--size 512x512] [--renderer passthrough] [--baseline DIR] [--no-write]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { REPO_ROOT, startServer } from '../test/support/server.ts';
import { startPeer } from '../test/support/wrtc-peer.ts';
import { sampleTree } from '../test/support/proc.ts';
import { fmt, machine, pct, percentile, writeSection } from './report.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '15' },
    size: { type: 'string', default: '512x512' },
    renderer: { type: 'string', default: 'passthrough' },
    baseline: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION_S = Number(values.duration);
const [WIDTH, HEIGHT] = values.size!.split('x').map(Number);

interface Turn {
  /** The server's own figures for the session (not for the echo). */
  stats?: { dropped: number; framesIn: number; decodeMs: { p50: number }; renderMs: { p50: number }; encodeMs: { p50: number }; serverLatencyMs: { p50: number; p95: number } };
  firstFrameMs: number;
  outFps: number;
  g2gP50: number;
  g2gP95: number;
  cpuPct: number;
  rssMiB: number;
}

interface Target {
  url: string;
  pid: number;
  stop(): Promise<unknown>;
}

async function startServerTarget(root?: string): Promise<Target> {
  // both servers as shipped (the baseline's checkout gets no test flags either); this one's stop made immediate
  const srv = await startServer({ args: ['--renderer', values.renderer!, '--log-level', 'warn', ...(root ? [] : ['--drain-timeout', '0'])], root, testDefaults: false, timeoutMs: 60_000 });
  return { url: srv.url, pid: srv.child.pid!, stop: () => srv.stop() };
}

async function startEchoTarget(): Promise<Target> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'test/support/echo-main.ts', '--size', String(WIDTH)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      buf += c;
      const m = /\{"url":"([^"]+)"\}/.exec(buf);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`echo exited with ${code}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

async function runTurn(start: () => Promise<Target>): Promise<Turn> {
  const target = await start();
  try {
    const peer = await startPeer({ baseUrl: target.url, query: { renderer: values.renderer! }, width: WIDTH, height: HEIGHT, fps: 30 });
    await peer.waitFor((s) => s.received >= 1, 20_000);
    const firstFrameMs = peer.received[0].at - peer.postedAt;
    // Let the sender's bandwidth estimate settle before measuring.
    await peer.waitFor((s) => s.received >= 60, 30_000);
    const warm = peer.received.length;
    const cpu0 = sampleTree(target.pid);
    const t0 = performance.now();
    const rss: number[] = [];
    while (performance.now() - t0 < DURATION_S * 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      rss.push(sampleTree(target.pid).rssMiB);
    }
    const cpu1 = sampleTree(target.pid);
    const elapsed = (performance.now() - t0) / 1000;
    const frames = peer.received.slice(warm);
    const lat = frames.map((f) => f.latencyMs).filter((v): v is number => v !== null).sort((a, b) => a - b);
    const listed = await fetch(`${target.url}/v1/sessions`).then((r) => (r.ok ? r.json() : null), () => null);
    await peer.close();
    return {
      stats: listed?.sessions?.[0]?.stats,
      firstFrameMs,
      outFps: frames.length / elapsed,
      g2gP50: pct(lat, 50),
      g2gP95: pct(lat, 95),
      cpuPct: ((cpu1.cpuS - cpu0.cpuS) / elapsed) * 100,
      rssMiB: Math.max(...rss),
    };
  } finally {
    await target.stop();
  }
}

const a: Turn[] = [];
const b: Turn[] = [];
const base: Turn[] = [];
for (let r = 0; r < ROUNDS; r++) {
  process.stderr.write(`bench:loop round ${r + 1}/${ROUNDS}: server…\n`);
  a.push(await runTurn(() => startServerTarget()));
  process.stderr.write(`bench:loop round ${r + 1}/${ROUNDS}: libwebrtc echo…\n`);
  b.push(await runTurn(startEchoTarget));
  if (values.baseline) {
    process.stderr.write(`bench:loop round ${r + 1}/${ROUNDS}: baseline server (${values.baseline})…\n`);
    base.push(await runTurn(() => startServerTarget(values.baseline)));
  }
}

const med = (turns: Turn[], k: Exclude<keyof Turn, 'stats'>) => percentile(turns.map((t) => t[k]), 50);
const ratio = (k: Exclude<keyof Turn, 'stats'>, ref = b) => percentile(a.map((t, i) => t[k] / ref[i][k]), 50);
const diff = (k: Exclude<keyof Turn, 'stats'>, ref = b) => percentile(a.map((t, i) => t[k] - ref[i][k]), 50);
const range = (turns: Turn[], k: Exclude<keyof Turn, 'stats'>, d = 1) => {
  const v = turns.map((t) => t[k]).sort((x, y) => x - y);
  return `${fmt(v[0], d)}–${fmt(v[v.length - 1], d)}`;
};

const rows: Array<[string, Exclude<keyof Turn, 'stats'>, 'ratio' | 'diff', number]> = [
  ['CPU, % of one core (process + children)', 'cpuPct', 'ratio', 0],
  ['first frame after POST, ms', 'firstFrameMs', 'ratio', 0],
  ['glass-to-glass p50, ms', 'g2gP50', 'diff', 1],
  ['glass-to-glass p95, ms', 'g2gP95', 'diff', 1],
  ['output fps', 'outFps', 'ratio', 1],
  ['RSS, MiB (process + children)', 'rssMiB', 'ratio', 0],
];
const compare = (k: Exclude<keyof Turn, 'stats'>, how: 'ratio' | 'diff', ref: Turn[]) =>
  how === 'ratio' ? `× ${fmt(ratio(k, ref), 2)}` : `${diff(k, ref) >= 0 ? '+' : ''}${fmt(diff(k, ref), 1)} ms`;
const withBase = base.length > 0;
/** The baseline named by its commit, not by a path of this machine. */
const baseName = values.baseline ? `commit ${execFileSync('git', ['-C', values.baseline, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()}` : '';
const table = [
  `| per session | this server, median (range) | libwebrtc echo, median (range) | server vs echo, median of turn pairs |${withBase ? ` baseline (${baseName}), median (range) | server vs baseline |` : ''}`,
  `| --- | --- | --- | --- |${withBase ? ' --- | --- |' : ''}`,
  ...rows.map(([label, k, how, d]) => {
    const extra = withBase ? ` ${fmt(med(base, k), d)} (${range(base, k, d)}) | ${compare(k, how, base)} |` : '';
    return `| ${label} | ${fmt(med(a, k), d)} (${range(a, k, d)}) | ${fmt(med(b, k), d)} (${range(b, k, d)}) | ${compare(k, how, b)} |${extra}`;
  }),
].join('\n');

const body = `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}; renderer \`${values.renderer}\`, ${WIDTH}×${HEIGHT} in and out, one session, ${ROUNDS} turns each of ${DURATION_S} s after a 60-frame warm-up, server and echo${withBase ? ` and the baseline server (${baseName}) ` : ''} in alternating turns.

${table}

- The server's own figures, per turn (frames in, dropped, decode / render / encode p50 ms, server-added latency p50 / p95 ms): ${a.map((t) => (t.stats ? `${t.stats.framesIn} in, ${t.stats.dropped} dropped, ${fmt(t.stats.decodeMs.p50)} / ${fmt(t.stats.renderMs.p50)} / ${fmt(t.stats.encodeMs.p50)}, ${fmt(t.stats.serverLatencyMs.p50)} / ${fmt(t.stats.serverLatencyMs.p95)}` : '–')).join('; ')}.
- *glass-to-glass*: from the peer handing a frame to its encoder to the peer receiving the returned frame (libwebrtc encode, network, the server or the echo, libwebrtc decode), read from the frame ids.
- *first frame*: from the POST of the offer to the first returned frame on the peer (the peer waits for its own ICE gathering before posting).
- The echo is libwebrtc (native VP8) with the same cover-scale in JS; both run as their own process, and the sending peer shares the same 2 cores.`;

console.log(body);
if (!values['no-write']) await writeSection('loop', 'Media loop (`npm run bench:loop`)', body);
