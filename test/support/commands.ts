/**
 * Running the commands the READMEs show, as a user's shell would (test/commands.test.ts,
 * test/readme-diffusion.test.ts): each in its own process group, so that Ctrl+C reaches a
 * wrapper's server too.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './server.ts';

/** README's diffusion renderer examples, in its order; the test below runs each as written. */
export const DIFFUSION_COMMANDS = [
  'npm run export:tiny',
  'npm start -- --renderer xportrait-lcm --pack packs/tiny',
  'npm start -- --renderer xportrait-lcm --engine torch --weights tiny --device cpu',
  'npm start -- --renderer xportrait-lcm --engine torch --weights random',
];

const PATH = `${join(REPO_ROOT, 'node_modules/.bin')}:${process.env.PATH}`;

export interface Running {
  child: ChildProcess;
  out(): string;
  /** Types into the command's standard input (a pseudo-terminal's, under `script`). */
  type(text: string): void;
  exited: Promise<number | null>;
  /** Ctrl+C: SIGINT to the command's whole process group, as a terminal sends it. */
  interrupt(): Promise<number | null>;
}

/**
 * Ctrl+C on `npm start` / `deno task start`: the server shuts down cleanly (it logs "bye"). The
 * wrapper reports the interrupt its own way (npm exits 130; deno task dies of the signal).
 */
export async function stoppedCleanly(r: Running, what: string): Promise<void> {
  const code = await r.interrupt();
  assert.ok(code === 0 || code === 130 || code === null, `${what} exited ${code}:\n${r.out().slice(-1500)}`);
  assert.match(r.out(), /bye/, `${what}: the server shut down cleanly:\n${r.out().slice(-1500)}`);
}

/** Runs one command line with bash in its own process group. */
export function start(command: string, env: Record<string, string> = {}): Running {
  const child = spawn('bash', ['-c', command], { cwd: REPO_ROOT, env: { ...process.env, PATH, ...env }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d.toString()));
  child.stderr!.on('data', (d) => (out += d.toString()));
  // 'close', not 'exit': it waits for every process that holds the output (a wrapper's server too).
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  running.add(child);
  void exited.then(() => running.delete(child));
  return {
    child,
    out: () => out,
    type: (text) => child.stdin!.write(text),
    exited,
    async interrupt() {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGINT');
      return exited;
    },
  };
}
const running = new Set<ChildProcess>();

/** Kills whatever a test left running (for its file's `after`). */
export function killLeftovers(): void {
  for (const c of running) if (c.exitCode === null) process.kill(-c.pid!, 'SIGKILL');
}

export async function run(command: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; out: string }> {
  const r = start(command, env);
  const timer = setTimeout(() => r.child.exitCode === null && process.kill(-r.child.pid!, 'SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, out: r.out() };
}

export async function healthy(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}

/** The shell commands of a Markdown file's ```sh blocks, one per line, comments stripped. */
export function shellCommands(file: string): string[] {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8');
  const out: string[] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1].split('\n')) {
      const cmd = line.replace(/\s+#.*$/, '').trim();
      if (cmd) out.push(cmd);
    }
  }
  return out;
}
