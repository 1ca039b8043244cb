/** Entry point: config → app → listen; SIGINT/SIGTERM close every session and exit 0. */
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { helpText, loadConfig } from './config.ts';
import { XplError } from './errors.ts';
import { attachControl } from './control/server.ts';
import { createApp } from './http/app.ts';
import { ViewerTokens } from './http/tokens.ts';
import { createLogger } from './log.ts';
import { sampleEventLoopLag } from './metrics.ts';
import { findPortraitFace } from './portraits/face-check.ts';
import { PortraitStore } from './portraits/store.ts';
import { SessionManager } from './session/manager.ts';

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
  const portraits = new PortraitStore(findPortraitFace);
  await portraits.loadDefault();
  const sessions = new SessionManager(config, log);
  const tokens = new ViewerTokens(config.tokenSecret);
  const app = createApp({ config, log, sessions, portraits, tokens, startedAt: Date.now() });

  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info: AddressInfo) => {
    const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
    log.info({ url: `http://${host}:${info.port}`, renderer: config.renderer, output: `${config.output.width}x${config.output.height}` }, 'listening');
  });

  const control = attachControl(server as unknown as import('node:http').Server, { config, log, sessions, portraits, tokens });

  const lagTimer = setInterval(sampleEventLoopLag, 1000);
  lagTimer.unref();

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, sessions: sessions.size }, 'shutting down');
    control.close();
    server.close();
    await sessions.closeAll('server shutdown');
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
