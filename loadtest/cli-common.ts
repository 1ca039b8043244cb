/**
 * What the two load-test commands (cli.ts with wrtc peers, browser-cli.ts with Chromium) share:
 * their common flags, number checks, and the local server `--spawn` starts.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { startServer, type ServerHandle } from '../test/support/server.ts';

/** Flags both commands take, with the same meaning and defaults (`duration` and `renderer` differ). */
export const COMMON_OPTIONS = {
  url: { type: 'string' },
  spawn: { type: 'boolean', default: false },
  'server-arg': { type: 'string', multiple: true, default: [] },
  sessions: { type: 'string', default: '1' },
  portrait: { type: 'string' },
  warmup: { type: 'string', default: '3' },
  json: { type: 'string' },
  'api-key': { type: 'string' },
  quiet: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} satisfies NonNullable<ParseArgsConfig['options']>;

export type ArgValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Prints the reason and the usage, and exits 2 (a bad argument). */
export function badArgument(message: string, help: string): never {
  console.error(`${message}\n\n${help}`);
  process.exit(2);
}

/** The flag's value as a number in min..max, or exit 2 saying why. */
export function numberArg(values: ArgValues, name: string, min: number, max: number, help: string): number {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < min || v > max) badArgument(`--${name}: expected a number in ${min}..${max}, got ${String(values[name])}`, help);
  return v;
}

/**
 * `--spawn`: this checkout's server as shipped (its own defaults, not the test suite's flags),
 * on loopback ICE, with room for the run's sessions; only its stop is made immediate.
 */
export function spawnServer(renderer: string, maxSessions: number, extra: string[]): Promise<ServerHandle> {
  return startServer({
    args: ['--ice-address', '127.0.0.1', '--max-sessions', String(maxSessions), '--log-level', 'warn', '--drain-timeout', '0', '--renderer', renderer === 'xportrait-lcm' ? 'passthrough' : renderer, ...extra],
    testDefaults: false,
    timeoutMs: 60_000,
  });
}

/** Parses the command line strictly: exit 2 with the usage on an unknown flag, exit 0 after printing it for --help. */
export function parseCommandLine(options: NonNullable<ParseArgsConfig['options']>, help: string): ArgValues {
  let values: ArgValues;
  try {
    ({ values } = parseArgs({ options, strict: true, allowPositionals: false }));
  } catch (err) {
    badArgument((err as Error).message, help);
  }
  if (values.help) {
    console.log(help);
    process.exit(0);
  }
  return values;
}

/** Writes a run's result as JSON; a figure that could not be measured (NaN, Infinity) becomes null. */
export function writeResultJson(file: string, result: unknown): Promise<void> {
  return writeFile(file, JSON.stringify(result, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1));
}
