/**
 * Media packets the kernel dropped before the server could read them: a UDP socket whose receive
 * buffer is full drops what arrives next, and /proc/net/udp counts it per socket ("drops"). This is
 * where packets go when the main thread, which reads every peer's socket, waits too long for a
 * core (docs/BENCHMARKS.md, "The keyframe-request storm, looked into"): werift sees a gap, asks
 * for a retransmission, and past that a keyframe. Nothing else in the server can see these losses,
 * so they are exported (`xpl_udp_receive_drops_total`) for an operator to tell a machine short of
 * CPU from a lossy network.
 *
 * Linux only (elsewhere `null`). The sockets are this process's: /proc/net/udp lists every socket
 * of the network namespace, a client on the same machine included, so they are matched by inode
 * against /proc/self/fd.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Drops so far of each of this process's UDP sockets, by socket inode; null where /proc cannot tell. */
export function udpDropsBySocket(): Map<number, number> | null {
  const mine = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return null;
  }
  for (const fd of fds) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (link.startsWith('socket:[')) mine.add(Number(link.slice(8, -1)));
  }
  const out = new Map<number, number>();
  let read = false;
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue; // no IPv6, for one
    }
    read = true;
    // Columns after the header: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13) continue;
      const inode = Number(f[9]);
      if (mine.has(inode)) out.set(inode, Number(f[12]));
    }
  }
  return read ? out : null;
}

/**
 * Turns the per-socket counts into one running total. A socket's count starts at 0 when it is
 * opened and vanishes when it is closed, so each read adds what each socket gained since the one
 * before; drops on a socket closed between two reads are missed.
 */
export class UdpDropCounter {
  private last = new Map<number, number>();

  /** Drops since the previous call (all of a new socket's), or null where /proc cannot tell. */
  gained(): number | null {
    const now = udpDropsBySocket();
    if (!now) return null;
    let sum = 0;
    for (const [inode, drops] of now) sum += Math.max(0, drops - (this.last.get(inode) ?? 0));
    this.last = now;
    return sum;
  }
}
