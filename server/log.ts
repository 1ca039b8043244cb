/**
 * Structured logs (pino). Child loggers carry the session id so that one session's story can be
 * grepped. JSON lines for machines; on a terminal, the same records as short readable lines.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  const options = { level, base: { svc: 'xportrait-live' }, timestamp: pino.stdTimeFunctions.isoTime };
  return format === 'pretty' ? pino(options, prettyDestination(process.stdout)) : pino(options);
}

/** 'auto' → pretty when stdout is a terminal, JSON otherwise (pipes, files, log collectors). */
export function resolveLogFormat(format: 'auto' | LogFormat, isTty = !!process.stdout.isTTY): LogFormat {
  return format === 'auto' ? (isTty ? 'pretty' : 'json') : format;
}

const LEVELS: Record<number, [string, string]> = {
  10: ['trace', '\x1b[90m'],
  20: ['debug', '\x1b[90m'],
  30: ['info', '\x1b[36m'],
  40: ['warn', '\x1b[33m'],
  50: ['error', '\x1b[31m'],
  60: ['fatal', '\x1b[31m'],
};
/** Fields every record has; a pretty line shows them in its own way or not at all. */
const OMIT = new Set(['level', 'time', 'msg', 'svc', 'pid', 'hostname']);

/** One pino JSON record → `12:00:01 info  session started session=… renderer=mesh-warp`. */
export function prettyLine(json: string, colour: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const [name, ansi] = LEVELS[rec.level as number] ?? ['log', ''];
  const time = typeof rec.time === 'string' ? rec.time.slice(11, 19) : '';
  const fields = Object.entries(rec)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => {
      const text = typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v);
      return `${k}=${text.length > 160 ? `${text.slice(0, 157)}...` : text}`;
    });
  const level = colour ? `${ansi}${name.padEnd(5)}\x1b[0m` : name.padEnd(5);
  return `${time} ${level} ${String(rec.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

function prettyDestination(out: NodeJS.WriteStream): DestinationStream {
  const colour = !!out.isTTY;
  return { write: (line: string) => void out.write(prettyLine(line, colour)) };
}
