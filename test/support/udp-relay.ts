/**
 * A UDP relay on loopback that sits between a test peer and the server, so that every ICE, DTLS,
 * SRTP and SRTCP packet of a session passes through it and can be lost, reordered, delayed,
 * cut off, or have garbage injected beside it.
 *
 *   client (wrtc) ──► relay.clientPort ──► server's 127.0.0.1 candidate
 *   client (wrtc) ◄── relay.clientPort ◄── relay.serverPort ◄── server
 *
 * The relay only ever sends to the two loopback addresses it read from the SDP (the client's and
 * the server's 127.0.0.1 host candidates), never to an address learned from a packet, so it
 * cannot be made to send anywhere else. Wire it up with the peer's SDP hooks:
 *
 * @example
 * const relay = await startUdpRelay();
 * const peer = await startPeer({ baseUrl, mungeOffer: relay.mungeOffer, mungeAnswer: relay.mungeAnswer });
 * relay.setFault({ loss: 0.2 });
 *
 * `mungeOffer` replaces the offer's candidates with one pointing at `serverPort` (so the server can
 * only reach the client through the relay) and remembers the client's loopback candidate;
 * `mungeAnswer` does the same the other way. The server must offer a 127.0.0.1 candidate
 * (start it with `--ice-address 127.0.0.1`).
 */
import { createSocket, type Socket } from 'node:dgram';

export type Direction = 'toServer' | 'toClient';

export interface Fault {
  /** Probability (0..1) that a packet is dropped. */
  loss?: number;
  /** Probability (0..1) that a packet is held back by `reorderDelayMs` so later ones overtake it. */
  reorder?: number;
  reorderDelayMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs] per packet (this reorders packets too). */
  jitterMs?: number;
  /** Constant extra delay per packet. */
  delayMs?: number;
  /** Drop everything (a network outage). */
  outage?: boolean;
  /** Which directions the fault applies to (default both). */
  directions?: Direction[];
}

export interface RelayStats {
  forwarded: Record<Direction, number>;
  dropped: Record<Direction, number>;
  delayed: Record<Direction, number>;
  injected: Record<Direction, number>;
  /** Packets from an address that is not a loopback address, never forwarded. */
  foreign: number;
}

export interface UdpRelay {
  /** Port that stands in for the server (the client sends here). */
  readonly clientPort: number;
  /** Port that stands in for the client (the server sends here). */
  readonly serverPort: number;
  mungeOffer(sdp: string): string;
  mungeAnswer(sdp: string): string;
  setFault(f: Fault): void;
  /** Sends `bytes` toward one side as if they came from the other (from the relay's socket). */
  inject(toward: 'server' | 'client', bytes: Uint8Array): void;
  /** Where the relay forwards to, once the SDP has been seen. */
  readonly targets: { server?: { address: string; port: number }; client?: { address: string; port: number } };
  readonly stats: RelayStats;
  close(): Promise<void>;
}

const LOOPBACK = /^127\.\d+\.\d+\.\d+$/;

/** The first UDP host candidate on a loopback IPv4 address in an SDP, if any. */
export function loopbackCandidate(sdp: string): { address: string; port: number } | undefined {
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host/i.exec(line);
    if (m && LOOPBACK.test(m[1])) return { address: m[1], port: Number(m[2]) };
  }
  return undefined;
}

/** Replaces every a=candidate line of an SDP by one UDP host candidate at 127.0.0.1:`port`. */
export function replaceCandidates(sdp: string, port: number): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const out: string[] = [];
  let inserted = false;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('a=candidate:')) {
      if (!inserted) out.push(`a=candidate:1 1 udp 2130706431 127.0.0.1 ${port} typ host generation 0`);
      inserted = true;
      continue;
    }
    if (line.startsWith('a=end-of-candidates')) continue;
    // Media-level connection addresses should match the candidate (RFC 8839 §4.2.1.1); harmless either way.
    if (line.startsWith('c=IN IP4 ') && inserted) {
      out.push('c=IN IP4 127.0.0.1');
      continue;
    }
    out.push(line);
  }
  if (!inserted) {
    // No candidates at all: put ours after the video m-line's ice-pwd.
    const i = out.findIndex((l) => l.startsWith('a=ice-pwd:'));
    if (i < 0) throw new Error('replaceCandidates: the SDP has neither candidates nor ice-pwd');
    out.splice(i + 1, 0, `a=candidate:1 1 udp 2130706431 127.0.0.1 ${port} typ host generation 0`);
  }
  return out.join(eol);
}

async function bind(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      s.off('error', reject);
      resolve();
    });
  });
  // A send to a closed port (the peer already gone) must not kill the test.
  s.on('error', () => {});
  return s;
}

export async function startUdpRelay(opts: { random?: () => number } = {}): Promise<UdpRelay> {
  const random = opts.random ?? Math.random;
  const front = await bind(); // clientPort: the client talks to it
  const back = await bind(); // serverPort: the server talks to it
  const clientPort = front.address().port;
  const serverPort = back.address().port;
  const targets: UdpRelay['targets'] = {};
  let fault: Fault = {};
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const zero = (): Record<Direction, number> => ({ toServer: 0, toClient: 0 });
  const stats: RelayStats = { forwarded: zero(), dropped: zero(), delayed: zero(), injected: zero(), foreign: 0 };

  const send = (dir: Direction, msg: Buffer): void => {
    if (closed) return;
    const t = dir === 'toServer' ? targets.server : targets.client;
    if (!t) return;
    (dir === 'toServer' ? back : front).send(msg, t.port, t.address);
  };

  const forward = (dir: Direction, msg: Buffer, from: string): void => {
    if (!LOOPBACK.test(from)) {
      stats.foreign++;
      return;
    }
    const f = fault.directions && !fault.directions.includes(dir) ? {} : fault;
    if (f.outage || (f.loss && random() < f.loss)) {
      stats.dropped[dir]++;
      return;
    }
    let delay = f.delayMs ?? 0;
    if (f.jitterMs) delay += random() * f.jitterMs;
    if (f.reorder && random() < f.reorder) delay += f.reorderDelayMs ?? 30;
    stats.forwarded[dir]++;
    if (delay <= 0) {
      send(dir, msg);
      return;
    }
    stats.delayed[dir]++;
    const timer = setTimeout(() => {
      timers.delete(timer);
      send(dir, msg);
    }, delay);
    timers.add(timer);
  };

  front.on('message', (msg, rinfo) => forward('toServer', msg, rinfo.address));
  back.on('message', (msg, rinfo) => forward('toClient', msg, rinfo.address));

  return {
    clientPort,
    serverPort,
    targets,
    stats,
    mungeOffer(sdp) {
      const c = loopbackCandidate(sdp);
      if (!c) throw new Error('udp-relay: the offer has no 127.x UDP host candidate');
      targets.client = c;
      return replaceCandidates(sdp, serverPort);
    },
    mungeAnswer(sdp) {
      const c = loopbackCandidate(sdp);
      if (!c) throw new Error('udp-relay: the answer has no 127.x UDP host candidate (start the server with --ice-address 127.0.0.1)');
      targets.server = c;
      return replaceCandidates(sdp, clientPort);
    },
    setFault(f) {
      fault = { ...f };
    },
    inject(toward, bytes) {
      const dir: Direction = toward === 'server' ? 'toServer' : 'toClient';
      stats.injected[dir]++;
      send(dir, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all([new Promise<void>((r) => front.close(() => r())), new Promise<void>((r) => back.close(() => r()))]);
    },
  };
}
