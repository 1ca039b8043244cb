/** Structured JSON logs (pino). Child loggers carry the session id so that one session's story can be grepped. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'xportrait-live' }, timestamp: pino.stdTimeFunctions.isoTime });
}
