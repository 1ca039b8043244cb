/**
 * Load test with Chromium as the client (loadtest/browser.ts). See docs/LOADTEST.md.
 *
 *   node --import tsx loadtest/browser-cli.ts --spawn --renderer mesh-warp --sessions 2
 *
 * Exit status: 0 when the run completed, 1 on errors, 2 on bad arguments.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeDriving } from '../eval/make-driving.ts';
import { CHROMIUM_MISSING, findChromium } from '../test/support/browser.ts';
import { REPO_ROOT, type ServerHandle } from '../test/support/server.ts';
import { browserSummary, runBrowserLoad, type ScalabilityMode } from './browser.ts';
import { COMMON_OPTIONS, badArgument, numberArg, parseCommandLine, spawnServer, writeResultJson } from './cli-common.ts';

const MODES: readonly ScalabilityMode[] = ['L1T1', 'L1T2', 'L1T3'];

const HELP = `Usage: node --import tsx loadtest/browser-cli.ts (--url URL | --spawn) [options]

Sessions sent and received by headless Chromium (one page), glass-to-glass from RTP timestamps.

  --url URL            server origin, e.g. http://127.0.0.1:8080
  --spawn              start a local server (server/main.ts) for the run, with the server's own
                       defaults and --ice-address 127.0.0.1
  --server-arg ARG     extra flag for the spawned server (repeatable), e.g. --server-arg=--latency-budget=0
  --sessions N         concurrent sessions (default 1)
  --duration S         measured seconds after the warm-up (default 20)
  --warmup S           seconds before the measurement starts (default 5)
  --renderer R         passthrough | mesh-warp | xportrait-lcm (default mesh-warp)
  --portrait ID        portrait id for the sessions (default: the server's default portrait)
  --mode M             the sender's VP8 scalability mode: L1T1 | L1T2 | L1T3 (default L1T2, as the
                       web app and the SDK send)
  --camera FILE.y4m    the fake camera's video, looped (default: the scripted face video of
                       \`npm run eval:driving\`, 640×480 at 30 fps, made into a temporary file)
  --json FILE          write the full result as JSON
  --api-key KEY        bearer key (or XPL_API_KEY)
  --quiet              no progress lines
`;

const values = parseCommandLine(
  {
    ...COMMON_OPTIONS,
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    renderer: { type: 'string', default: 'mesh-warp' },
    mode: { type: 'string', default: 'L1T2' },
    camera: { type: 'string' },
  },
  HELP,
);

const bad = (message: string): never => badArgument(message, HELP);
const num = (name: string, min: number, max: number): number => numberArg(values, name, min, max, HELP);

const sessions = num('sessions', 1, 32);
const durationS = num('duration', 1, 3600);
const warmupS = num('warmup', 0, 120);
const mode = String(values.mode) as ScalabilityMode;
if (!MODES.includes(mode)) bad(`--mode: expected one of ${MODES.join(', ')}, got ${mode}`);
if (!values.url === !values.spawn) bad('give either --url URL or --spawn');
if (values.camera && !existsSync(String(values.camera))) bad(`--camera: no such file: ${String(values.camera)}`);
const chromiumPath = findChromium();
if (!chromiumPath) {
  console.error(CHROMIUM_MISSING);
  process.exit(1);
}

const progress = values.quiet ? undefined : (line: string) => process.stderr.write(`${line}\n`);
const renderer = String(values.renderer);
let server: ServerHandle | undefined;
let scratch: string | undefined;
let code = 0;
try {
  let camera = values.camera ? String(values.camera) : '';
  if (!camera) {
    scratch = await mkdtemp(join(tmpdir(), 'xpl-browser-load-'));
    camera = join(scratch, 'camera.y4m');
    progress?.('making the camera video (the scripted face of eval:driving) …');
    await makeDriving({ portrait: join(REPO_ROOT, 'test/fixtures/grace_hopper.jpg'), out: camera });
  }
  let url = values.url ? String(values.url) : '';
  if (values.spawn) {
    progress?.('starting a local server …');
    server = await spawnServer(renderer, sessions + 2, values['server-arg'] as string[]);
    url = server.url;
  }
  const result = await runBrowserLoad({
    url,
    apiKey: (values['api-key'] as string | undefined) ?? process.env.XPL_API_KEY,
    renderer,
    portrait: values.portrait as string | undefined,
    sessions,
    durationS,
    warmupS,
    mode,
    camera,
    chromiumPath,
    progress,
  });
  console.log(browserSummary(result));
  if (values.json) {
    await writeResultJson(String(values.json), result);
    progress?.(`wrote ${values.json}`);
  }
} catch (err) {
  console.error(`load test failed: ${(err as Error).message ?? err}`);
  code = 1;
} finally {
  if (server) await server.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
}
process.exit(code);
