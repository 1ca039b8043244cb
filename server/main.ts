/** Entry point: config → server → listen; SIGTERM drains, SIGINT closes every session at once; exit 0 once stopped. */
import { networkInterfaces } from 'node:os';
import { helpText, isLoopback, loadConfig, type Config } from './config.ts';
import { XplError } from './errors.ts';
import { createLogger, resolveLogFormat } from './log.ts';
import { startServer } from './server.ts';

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = loadConfig(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof XplError ? err.message : err);
    process.exit(2);
  }
  if (parsed.help) {
    console.log(helpText());
    return;
  }
  const { config } = parsed;
  const format = resolveLogFormat(config.logFormat);
  const log = createLogger(config.logLevel, format);
  let server;
  try {
    server = await startServer(config, log);
  } catch (err) {
    // A start refused for a stated reason (torch or CUDA missing, a bad pack): say it, exit 2.
    if (!(err instanceof XplError)) throw err;
    console.error(`${err.code}: ${err.message}`);
    process.exit(2);
  }
  if (format === 'pretty') process.stdout.write(banner(config, server.url));
  void server.stopped.then(() => {
    log.info('bye');
    process.exit(0);
  });

  // SIGTERM drains (rolling restarts: the live sessions get --drain-timeout to finish); SIGINT,
  // or a second SIGTERM, closes everything at once.
  let terms = 0;
  process.on('SIGTERM', () => {
    log.info({ signal: 'SIGTERM', sessions: server.sessions.size }, terms === 0 ? 'draining' : 'shutting down');
    void (terms++ === 0 ? server.drain('SIGTERM') : server.close('server shutdown (second SIGTERM)'));
  });
  process.on('SIGINT', () => {
    log.info({ signal: 'SIGINT', sessions: server.sessions.size }, 'shutting down');
    void server.close('server shutdown (SIGINT)');
  });
}

/** What a person starting the server on a terminal needs: where to open it, what it runs, how to stop it. */
function banner(config: Config, url: string): string {
  const wildcard = config.host === '0.0.0.0' || config.host === '::';
  const lan = wildcard ? lanAddress() : undefined;
  const open = lan ? url.replace(/\/\/[^/]+:/, `//${lan}:`) : url;
  const secureNote = !url.startsWith('https:') && !isLoopback(config.host) ? '  (browsers allow the camera only on https or localhost: see docs/DEPLOY.md)' : '';
  return [
    '',
    '  xportrait-live is running',
    `    open      ${open}/   then allow the camera and press Connect${secureNote}`,
    `    renderer  ${config.renderer}, output ${config.output.width}x${config.output.height}${config.apiKey ? ', API key required' : ''}`,
    '    stop      Ctrl+C',
    '',
    '',
  ].join('\n');
}

function lanAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
