/**
 * The whole server as one object: portraits, sessions, HTTP app, control socket, listening
 * socket. main.ts runs it as a process; tests can run it inside their own process to reach
 * sessions directly (e.g. to kill a session's worker and watch it recover).
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { serve } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import { attachControl } from './control/server.ts';
import { createApp } from './http/app.ts';
import { PublishRegistry } from './http/publish.ts';
import { Tokens } from './http/tokens.ts';
import type { Logger } from './log.ts';
import { sampleEventLoopLag } from './metrics.ts';
import { findPortraitFace } from './portraits/face-check.ts';
import { PortraitStore } from './portraits/store.ts';
import { SessionManager } from './session/manager.ts';
import { closePackWorkers, PACK_WORKER_URL } from './renderers/xportrait-lcm/pack-host.ts';
import { LOOP_WORKER_URL, LoopWorkerPool } from './loop/worker-pool.ts';
import { CODEC_WORKER_URL } from './media/wasm-codec.ts';
import { bundleWorkers } from './workers/bundle.ts';
import { connectionOptions, warmUpRtc } from './rtc/connection.ts';
import { chooseCodec } from './media/choose-codec.ts';

export interface RunningServer {
  url: string;
  sessions: SessionManager;
  portraits: PortraitStore;
  /** Stops accepting, closes every session and the control socket. */
  close(reason?: string): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const portraits = new PortraitStore(findPortraitFace);
  await portraits.loadDefault();
  const [codec] = await Promise.all([chooseCodec(config, log), bundleWorkers([LOOP_WORKER_URL, CODEC_WORKER_URL, PACK_WORKER_URL])]);
  const pool = new LoopWorkerPool(
    config.warmWorkers,
    { renderer: config.renderer, codec, output: { width: config.output.width, height: config.output.height, fps: config.maxFps, bitrate: config.bitrate } },
    log,
  );
  // Open the doors warm: the first session should wait neither for a worker nor for werift's first use.
  await Promise.all([pool.warm(), warmUpRtc(connectionOptions(config))]);
  const sessions = new SessionManager(config, log, { pool, codec });
  const tokens = new Tokens(config.tokenSecret);
  const publishers = new PublishRegistry(sessions);
  const app = createApp({ config, log, sessions, portraits, tokens, publishers, startedAt: Date.now() });
  // HTTPS and WSS on the same port when a certificate is configured (the control socket rides the same server).
  const tls = config.tlsCert && config.tlsKey ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) } : undefined;

  let server!: ReturnType<typeof serve>;
  const info = await new Promise<AddressInfo>((resolve) => {
    server = serve({ fetch: app.fetch, port: config.port, hostname: config.host, ...(tls ? { createServer: createHttpsServer, serverOptions: tls } : {}) }, resolve);
  });
  const control = attachControl(server as unknown as Server, { config, log, sessions, portraits, tokens });
  const lagTimer = setInterval(sampleEventLoopLag, 1000);
  lagTimer.unref();

  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  const url = `${tls ? 'https' : 'http'}://${host}:${info.port}`;
  log.info({ url, renderer: config.renderer, output: `${config.output.width}x${config.output.height}`, codec: codec.name }, 'listening');

  return {
    url,
    sessions,
    portraits,
    async close(reason = 'server shutdown') {
      clearInterval(lagTimer);
      control.close();
      server.close();
      await sessions.closeAll(reason);
      await pool.close();
      await closePackWorkers();
    },
  };
}
