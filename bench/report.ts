/**
 * Writes one benchmark's Markdown into docs/BENCHMARKS.md, between its own markers, so each
 * `npm run bench:…` replaces only its section and keeps the others. Every section states the
 * machine and the date it was measured on.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const FILE = fileURLToPath(new URL('../docs/BENCHMARKS.md', import.meta.url));
const HEADER = `# Benchmarks

Each section is written by its benchmark command and states the machine and the date. Numbers
from a 2-core machine that also runs the load generator are conservative: the sending and
receiving peers share the CPU with the server.
`;

export function machine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'} × ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`;
}

/** `file`: another doc than docs/BENCHMARKS.md (e.g. the front-door figures in docs/LOADTEST.md). */
export async function writeSection(name: string, title: string, body: string, file = FILE): Promise<void> {
  let doc = HEADER;
  try {
    doc = await readFile(file, 'utf8');
  } catch {
    // First benchmark written on this checkout: start from the header.
  }
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const section = `${start}\n## ${title}\n\n${body.trim()}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  doc = re.test(doc) ? doc.replace(re, section) : `${doc.trimEnd()}\n\n${section}\n`;
  await writeFile(file, doc);
}

/** Nearest-rank percentile of unsorted values. */
export function percentile(values: number[], p: number): number {
  return pct([...values].sort((a, b) => a - b), p);
}

/** Prints lines and keeps them, so a benchmark can also write what it printed to its section. */
export function printer(): { print: (line?: string) => void; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    print(line = '') {
      console.log(line);
      lines.push(line);
    },
  };
}

export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '–');
