/** Entry point: config → server → listen; SIGINT/SIGTERM close every session and exit 0. */
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

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, sessions: server.sessions.size }, 'shutting down');
    await server.close();
    log.info('bye');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
