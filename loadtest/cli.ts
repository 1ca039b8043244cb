/**
 * Load test: N concurrent independent WebRTC peers (libwebrtc via @roamhq/wrtc) against an
 * xportrait-live server. See docs/LOADTEST.md.
 *
 *   node --import tsx loadtest/cli.ts --url http://127.0.0.1:8080 --sessions 4 --duration 30 --renderer passthrough
 *   node --import tsx loadtest/cli.ts --spawn --ramp --renderer mesh-warp --driving out/driving.y4m --probe
 *
 * Exit status: 0 when the run completed (and, with --ramp, found a capacity ≥ 1), 1 on errors,
 * 2 on bad arguments, 3 when the watchdog had to stop a run that overran its bound.
 */
import { writeFile } from 'node:fs/promises';
import type { ServerHandle } from '../test/support/server.ts';
import { COMMON_OPTIONS, numberArg, parseCommandLine, spawnServer, writeResultJson } from './cli-common.ts';
import { readY4m } from '../server/media/y4m.ts';
import { htmlReport, textSummary } from './report.ts';
import { patternDriving, runLoad, type Driving } from './run.ts';

const HELP = `Usage: node --import tsx loadtest/cli.ts (--url URL | --spawn) [options]

  --url URL            server origin, e.g. http://127.0.0.1:8080, or a load balancer in front of
                       several nodes (docs/SCALING.md): the report then has a table per node
  --spawn              start a local server (server/main.ts) for the run, with the server's own
                       defaults (frame budget, admission control) and --ice-address 127.0.0.1
  --server-arg ARG     extra flag for the spawned server (repeatable), e.g. --server-arg=--output=256x256
  --sessions N         concurrent sessions (default 1; ignored with --ramp)
  --duration S         measured seconds after the warm-up (default 30)
  --renderer R         passthrough | mesh-warp | xportrait-lcm (default passthrough)
  --portrait ID        portrait id for the sessions (default: the server's default portrait)
  --driving FILE.y4m   loop this video instead of the id pattern (size and fps from the file);
                       glass-to-glass then needs --probe (the output carries no ids)
  --width/--height/--fps  size and rate of the id pattern (default 640×480 at 30)
  --probe              add one passthrough pattern session that measures glass-to-glass under the
                       same load (reported apart, not counted in the aggregate)
  --ramp               add sessions one at a time until one misses the SLO; reports the capacity
  --step S             ramp: measured seconds per level (default 10)
  --max-sessions N     ramp: stop at this many sessions (default 16)
  --slo-fps F          SLO: every session's out fps ≥ F (default 25)
  --slo-p95 MS         SLO: latency p95 ≤ MS (default 150)
  --warmup S           seconds left out at the start of the run / of each ramp level (default 3)
  --freeze-ms MS       a gap between received frames longer than this is a freeze (default 200)
  --json FILE          write the full result as JSON
  --plot FILE.html     write a self-contained HTML page with SVG charts
  --api-key KEY        bearer key (or XPL_API_KEY)
  --any-ice            use every ICE candidate (default for a loopback URL: 127.x candidates only)
  --quiet              no progress lines
`;

const values = parseCommandLine(
  {
    ...COMMON_OPTIONS,
    duration: { type: 'string', default: '30' },
    renderer: { type: 'string', default: 'passthrough' },
    driving: { type: 'string' },
    width: { type: 'string', default: '640' },
    height: { type: 'string', default: '480' },
    fps: { type: 'string', default: '30' },
    probe: { type: 'boolean', default: false },
    ramp: { type: 'boolean', default: false },
    step: { type: 'string', default: '10' },
    'max-sessions': { type: 'string', default: '16' },
    'slo-fps': { type: 'string', default: '25' },
    'slo-p95': { type: 'string', default: '150' },
    'freeze-ms': { type: 'string', default: '200' },
    plot: { type: 'string' },
    'any-ice': { type: 'boolean', default: false },
  },
  HELP,
);

const num = (name: string, min: number, max: number): number => numberArg(values, name, min, max, HELP);

const sessions = num('sessions', 1, 200);
const durationS = num('duration', 1, 24 * 3600);
const stepS = num('step', 2, 600);
const maxSessions = num('max-sessions', 1, 200);
const warmupS = num('warmup', 0, 120);
const renderer = String(values.renderer);
if (!values.url && !values.spawn) {
  console.error(`give --url URL or --spawn\n\n${HELP}`);
  process.exit(2);
}

let driving: Driving;
if (values.driving) {
  const y = await readY4m(String(values.driving));
  driving = { name: String(values.driving), width: y.width, height: y.height, fps: Math.round((y.fpsNum / y.fpsDen) * 100) / 100, frames: y.frames };
} else {
  driving = patternDriving(num('width', 16, 3840), num('height', 16, 2160), num('fps', 1, 60));
}

const progress = values.quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);

let server: ServerHandle | undefined;
let url = values.url ? String(values.url).replace(/\/$/, '') : '';
if (values.spawn) {
  const cap = Math.max(sessions, values.ramp ? maxSessions : 0) + 2;
  const extra = values['server-arg'] as string[];
  progress?.('starting a local server …');
  server = await spawnServer(renderer, cap, extra);
  url = server.url;
}

const host = new URL(url).hostname;
const loopbackIce = !values['any-ice'] && (host === 'localhost' || host.startsWith('127.') || host === '[::1]');

// Watchdog: the run is bounded by construction; this only catches a hang (a peer that never answers).
const boundS = values.ramp ? maxSessions * (stepS + warmupS + 10) + 60 : durationS + warmupS + sessions * 5 + 60;
const watchdog = setTimeout(() => {
  console.error(`watchdog: the run overran its bound of ${boundS} s; stopping`);
  void server?.stop().finally(() => process.exit(3));
  setTimeout(() => process.exit(3), 5000).unref();
}, boundS * 1000);
watchdog.unref();

let code = 0;
try {
  const result = await runLoad({
    url,
    apiKey: (values['api-key'] as string | undefined) ?? process.env.XPL_API_KEY,
    renderer,
    portrait: values.portrait as string | undefined,
    sessions,
    durationS,
    ramp: values.ramp ? { stepS, maxSessions } : undefined,
    slo: { minFps: num('slo-fps', 0, 240), maxP95Ms: num('slo-p95', 1, 60_000) },
    driving,
    probe: Boolean(values.probe),
    warmupS,
    freezeMs: num('freeze-ms', 10, 60_000),
    loopbackIce,
    progress,
  });
  if (server) (result.options as { url: string }).url = `${url} (spawned: ${(values['server-arg'] as string[]).join(' ') || 'default flags'})`;
  console.log(textSummary(result));
  if (values.json) {
    await writeResultJson(String(values.json), result);
    progress?.(`wrote ${values.json}`);
  }
  if (values.plot) {
    await writeFile(String(values.plot), htmlReport(result));
    progress?.(`wrote ${values.plot}`);
  }
  if (result.aggregate.errors.length) code = 1;
  if (result.ramp && result.ramp.capacity < 1) code = 1;
} catch (err) {
  console.error(`load test failed: ${(err as Error).stack ?? err}`);
  code = 1;
} finally {
  if (server) {
    const exit = await server.stop();
    if (exit !== 0) progress?.(`! the spawned server exited with ${exit}`);
  }
}
process.exit(code);
