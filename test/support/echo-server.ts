/**
 * A stand-in for the server's session API, on @roamhq/wrtc: `POST /v1/sessions` answers a
 * sendrecv offer and sends the received video back 'cover'-scaled to `size`², like the
 * passthrough renderer; `DELETE /v1/sessions/ID` closes it (404 once gone). For testing the test
 * peer itself; not a model of anything else the server does.
 */
import { createServer, type Server } from 'node:http';
import wrtc from '@roamhq/wrtc';
import './wrtc-exit.ts';
import { coverScale } from './scale.ts';

const { RTCPeerConnection, nonstandard } = wrtc;

export interface EchoServer {
  url: string;
  /** Sessions currently open. */
  sessions(): number;
  close(): Promise<void>;
}

export async function startEchoServer(opts: { size?: number } = {}): Promise<EchoServer> {
  const size = opts.size ?? 512;
  const sessions = new Map<string, () => void>();
  let next = 1;

  const server: Server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'POST' && url.pathname === '/v1/sessions') {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const offer = Buffer.concat(chunks).toString('utf8');
        const pc = new RTCPeerConnection({ iceServers: [] });
        // Nulled on close: a reachable RTCVideoSource crashes node at exit.
        let source: InstanceType<typeof nonstandard.RTCVideoSource> | null = new nonstandard.RTCVideoSource();
        const out = source.createTrack();
        const sinks: Array<{ stop(): void }> = [];
        pc.addEventListener('track', (e: RTCTrackEvent) => {
          const sink = new nonstandard.RTCVideoSink(e.track);
          sinks.push(sink);
          sink.addEventListener('frame', (ev: Event) => {
            const { frame } = ev as unknown as { frame: { width: number; height: number; data: Uint8Array } };
            const scaled = coverScale({ ...frame, timestamp: 0 }, size, size);
            source?.onFrame({ width: size, height: size, data: scaled.data });
          });
        });
        await pc.setRemoteDescription({ type: 'offer', sdp: offer });
        const tr = pc.getTransceivers()[0];
        await tr.sender.replaceTrack(out);
        tr.direction = 'sendrecv';
        await pc.setLocalDescription(await pc.createAnswer());
        if (pc.iceGatheringState !== 'complete') {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 3000);
            pc.addEventListener('icegatheringstatechange', () => {
              if (pc.iceGatheringState === 'complete') {
                clearTimeout(t);
                resolve();
              }
            });
          });
        }
        const id = String(next++);
        sessions.set(id, () => {
          for (const s of sinks) s.stop();
          out.stop();
          source = null;
          pc.close();
        });
        res.writeHead(201, { 'Content-Type': 'application/sdp', Location: `/v1/sessions/${id}` });
        res.end(pc.localDescription!.sdp);
        return;
      }
      const m = /^\/v1\/sessions\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && m) {
        const close = sessions.get(m[1]);
        if (!close) {
          res.writeHead(404, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'not_found', message: 'no such session' } }));
          return;
        }
        sessions.delete(m[1]);
        close();
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(404);
      res.end();
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'internal', message: String(err) } }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    sessions: () => sessions.size,
    close: async () => {
      for (const close of sessions.values()) close();
      sessions.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
