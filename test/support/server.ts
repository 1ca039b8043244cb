/**
 * Runs the real server (`server/main.ts`) in a child process for integration and browser tests:
 * picks a free loopback port, waits for `/healthz`, keeps the child's output for diagnostics and
 * stops it on `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVER_ENTRY = 'server/main.ts';
/**
 * The Deno executable of the npm package `deno`, resolved through the package's own installer
 * API: its bin shim runs Deno as a child and would swallow the server's exit code on SIGTERM.
 */
export function denoBinary(): string | null {
  try {
    return createRequire(import.meta.url)('deno/install_api.cjs').runInstall() as string;
  } catch {
    return null;
  }
}

export interface ServerHandle {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  child: ChildProcess;
  /** The child's stdout and stderr so far, line by line (the last 2000 lines). */
  logs: string[];
  /**
   * SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code, or the signal's name when a
   * signal ended it (so that `assert.equal(await stop(), 0)` says 'SIGABRT' or 'SIGKILL', not null).
   */
  stop(graceMs?: number): Promise<number | NodeJS.Signals | null>;
}

export interface StartServerOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Run the server under Deno 2 (the npm package `deno`) instead of Node. */
  runtime?: 'node' | 'deno';
  /** How long to wait for /healthz (tsx compiles on the fly; slow on a busy 2-core machine). */
  timeoutMs?: number;
  /** Run the server of another checkout (a benchmark's baseline), with that checkout's node_modules. */
  root?: string;
  /**
   * Give the server the test suite's defaults (TEST_DEFAULTS below) where its args do not set them;
   * default true. The load generator's `--spawn` turns them off: it measures the server as shipped.
   */
  testDefaults?: boolean;
}

export function serverExists(): boolean {
  return existsSync(new URL(SERVER_ENTRY, `file://${REPO_ROOT}`));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Flags every test server gets unless its test passes its own. */
const TEST_DEFAULTS: Array<[flag: string, value: string]> = [
  // SIGTERM drains for --drain-timeout; tests that stop a server want it gone at once.
  ['--drain-timeout', '0'],
  // Admission control learns a session's cost from the CPU it sees, so on a machine busy with other
  // tests a second session can be refused (503) in a test that is about something else; the tests
  // of admission itself pass their own --max-load.
  ['--max-load', '16'],
  // Likewise the frame budget lowers a session's frame rate when the machine is short of CPU: a
  // test that counts frames must not lose them to another test keeping the machine busy; the
  // budget's own test passes its own --latency-budget.
  ['--latency-budget', '0'],
];

export async function startServer(opts: StartServerOptions = {}): Promise<ServerHandle> {
  const port = await freePort();
  // Another checkout (a benchmark's baseline) may predate these flags: it gets none of them.
  const given = (flag: string) => opts.args?.some((a) => a.startsWith(flag));
  const defaults = opts.root || opts.testDefaults === false ? [] : TEST_DEFAULTS.filter(([flag]) => !given(flag)).flat();
  const serverArgs = [SERVER_ENTRY, '--port', String(port), ...defaults, ...(opts.args ?? [])];
  const deno = opts.runtime === 'deno' ? denoBinary() : null;
  if (opts.runtime === 'deno' && !deno) throw new Error('the npm package "deno" is not installed');
  const [cmd, args] = deno ? [deno, ['run', '--allow-all', ...serverArgs]] : [process.execPath, ['--import', 'tsx', ...serverArgs]];
  const child = spawn(cmd, args, {
    cwd: opts.root ?? REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let announcedUrl: string | undefined;
  const onLine = (line: string): void => {
    logs.push(line);
    if (logs.length > 2000) logs.shift();
    if (!announcedUrl && line.includes('"url"')) {
      try {
        const u = (JSON.parse(line) as { url?: unknown }).url;
        if (typeof u === 'string') announcedUrl = u.replace(/\/$/, '');
      } catch {
        /* not JSON */
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream!.setEncoding('utf8');
    stream!.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
  }
  let exited: number | NodeJS.Signals | null | undefined;
  const exit = new Promise<number | NodeJS.Signals | null>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = code ?? signal;
      resolve(exited);
    });
  });

  const stop = async (graceMs = 5000): Promise<number | NodeJS.Signals | null> => {
    if (exited !== undefined) return exited;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exit;
    clearTimeout(timer);
    return code;
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const fallbackUrl = `http://127.0.0.1:${port}`;
  for (;;) {
    if (exited !== undefined) {
      throw new Error(`server exited with code ${exited} before it was healthy:\n${logs.slice(-40).join('\n')}`);
    }
    const url = announcedUrl ?? fallbackUrl;
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return { url, port: Number(new URL(url).port), child, logs, stop };
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`server not healthy after ${opts.timeoutMs ?? 30_000} ms:\n${logs.slice(-40).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}
