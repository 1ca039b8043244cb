/**
 * `npm run bench:loop`: the media loop end to end with the passthrough renderer. A libwebrtc peer
 * (@roamhq/wrtc) sends a 30 fps pattern whose frames carry ids; the server decodes, renders
 * (centre-crop + scale), encodes and sends back; the peer reads the ids of the frames it gets and
 * measures glass-to-glass latency on its own clock. The server's CPU and RSS are sampled from
 * /proc every second.
 *
 *   npm run bench:loop -- [--duration 30] [--renderer passthrough] [--no-write]
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { startServer } from '../test/support/server.ts';
import { startPeer } from '../test/support/wrtc-peer.ts';
import { fmt, machine, pct, writeSection } from './report.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '30' },
    renderer: { type: 'string', default: 'passthrough' },
    'no-write': { type: 'boolean', default: false },
  },
});
const DURATION_S = Number(values.duration);
const CASES = [
  { name: '512²', width: 512, height: 512 },
  { name: '720p', width: 1280, height: 720 },
];
const TICKS = 100; // USER_HZ on Linux

async function procSample(pid: number): Promise<{ cpuTicks: number; rssMiB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuTicks: Number(stat[11]) + Number(stat[12]), rssMiB: rssKb / 1024 };
}

interface Row {
  name: string;
  inFps: number;
  outFps: number;
  delivered: number;
  g2gP50: number;
  g2gP95: number;
  serverP50: number;
  serverP95: number;
  decode: string;
  render: string;
  encode: string;
  cpu: number;
  rss: number;
}

async function runCase(c: (typeof CASES)[number]): Promise<Row> {
  const srv = await startServer({ args: ['--renderer', values.renderer!, '--log-level', 'warn'] });
  const pid = srv.child.pid!;
  try {
    const peer = await startPeer({ baseUrl: srv.url, query: { renderer: values.renderer! }, width: c.width, height: c.height, fps: 30 });
    // Let the sender's bandwidth estimate settle before measuring.
    await peer.waitFor((s) => s.received >= 30, 20_000);
    const warm = peer.received.length;
    const sentAtStart = peer.stats().sent;
    const cpu0 = await procSample(pid);
    const t0 = performance.now();
    const rss: number[] = [];
    while (performance.now() - t0 < DURATION_S * 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      rss.push((await procSample(pid)).rssMiB);
    }
    const cpu1 = await procSample(pid);
    const elapsed = (performance.now() - t0) / 1000;
    const frames = peer.received.slice(warm);
    const lat = frames.map((f) => f.latencyMs).filter((v): v is number => v !== null).sort((a, b) => a - b);
    const sent = peer.stats().sent - sentAtStart;
    const sessions = (await (await fetch(`${srv.url}/v1/sessions`)).json()).sessions;
    const st = sessions[0].stats;
    await peer.close();
    const stage = (s: { p50: number; p95: number }) => `${fmt(s.p50)} / ${fmt(s.p95)}`;
    return {
      name: c.name,
      inFps: sent / elapsed,
      outFps: frames.length / elapsed,
      delivered: frames.length / Math.max(1, sent),
      g2gP50: pct(lat, 50),
      g2gP95: pct(lat, 95),
      serverP50: st.serverLatencyMs.p50,
      serverP95: st.serverLatencyMs.p95,
      decode: stage(st.decodeMs),
      render: stage(st.renderMs),
      encode: stage(st.encodeMs),
      cpu: ((cpu1.cpuTicks - cpu0.cpuTicks) / TICKS / elapsed) * 100,
      rss: Math.max(...rss),
    };
  } finally {
    await srv.stop();
  }
}

const rows: Row[] = [];
for (const c of CASES) {
  process.stderr.write(`bench:loop ${c.name} for ${DURATION_S} s…\n`);
  rows.push(await runCase(c));
}

const table = [
  '| input | sent fps | out fps | delivered | glass-to-glass p50 / p95 ms | server added p50 / p95 ms | decode ms p50/p95 | render ms | encode ms | server CPU % | server RSS MiB |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map(
    (r) =>
      `| ${r.name} | ${fmt(r.inFps)} | ${fmt(r.outFps)} | ${fmt(r.delivered * 100, 0)} % | ${fmt(r.g2gP50)} / ${fmt(r.g2gP95)} | ${fmt(r.serverP50)} / ${fmt(r.serverP95)} | ${r.decode} | ${r.render} | ${r.encode} | ${fmt(r.cpu, 0)} | ${fmt(r.rss, 0)} |`,
  ),
].join('\n');

const body = `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}; renderer \`${values.renderer}\`, output 512×512, ${DURATION_S} s per case after a warm-up, one session.

${table}

- *glass-to-glass*: from the peer handing a frame to its encoder to the peer receiving the returned frame (libwebrtc encode, network, server, libwebrtc decode), read from the frame ids.
- *server added*: last RTP packet of a driving frame in → its output frame packetised out (decode + render + encode + queueing).
- Stage times are per call as the frame loop sees them (thread hops included). The sending and receiving peer runs on the same 2 cores.`;

console.log(body);
if (!values['no-write']) await writeSection('loop', 'Media loop (`npm run bench:loop`)', body);
