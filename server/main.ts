/** Entry point: config → server → listen; SIGTERM drains, SIGINT closes every session at once; exit 0 once stopped. */
import { helpText, loadConfig } from './config.ts';
import { XplError } from './errors.ts';
import { createLogger } from './log.ts';
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
  const log = createLogger(config.logLevel);
  const server = await startServer(config, log);
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

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
