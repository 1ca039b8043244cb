/**
 * Portraits shared between nodes through Redis: the uploaded bytes (within --max-portrait-bytes,
 * checked at upload as on one node) and their description, under the content address the store
 * gives them (server/portraits/store.ts). A portrait uploaded through the load balancer lands on
 * one node; any other node fetches the bytes on first use, decodes them once and keeps them in
 * its own store.
 *
 *   xpl:portraits             set of portrait ids
 *   xpl:portrait:ID           JSON PortraitInfo
 *   xpl:portrait:ID:bytes     the uploaded image bytes
 */
import { XplError } from '../errors.ts';
import type { PortraitInfo, PortraitShare } from '../portraits/store.ts';
import { key, type SharedState } from './redis.ts';

export class RedisPortraits implements PortraitShare {
  constructor(private readonly shared: SharedState) {}

  async put(info: PortraitInfo, bytes: Uint8Array, maxCount: number): Promise<void> {
    await this.shared.run('sharing a portrait', async (c) => {
      const [count, member] = await Promise.all([c.sCard(key('portraits')), c.sIsMember(key('portraits'), info.id)]);
      if (!member && count >= maxCount) {
        throw new XplError('too_many_sessions', `the nodes hold their limit of ${maxCount} portraits: delete one first`, { retryAfter: 1 });
      }
      await c
        .multi()
        .set(key('portrait', info.id, 'bytes'), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        .set(key('portrait', info.id), JSON.stringify(info))
        .sAdd(key('portraits'), info.id)
        .exec();
    });
  }

  async fetch(id: string): Promise<{ info: PortraitInfo; bytes: Buffer } | null> {
    const [info, bytes] = await this.shared.runBinary(`portrait ${id}`, (c) => Promise.all([c.get(key('portrait', id)), c.get(key('portrait', id, 'bytes'))]));
    if (!info || !bytes) return null;
    return { info: JSON.parse(info.toString('utf8')) as PortraitInfo, bytes };
  }

  async exists(id: string): Promise<boolean> {
    return (await this.shared.run(`portrait ${id}`, (c) => c.exists(key('portrait', id)))) === 1;
  }

  async list(): Promise<PortraitInfo[]> {
    return this.shared.run('listing the shared portraits', async (c) => {
      const ids = await c.sMembers(key('portraits'));
      if (ids.length === 0) return [];
      const infos = await c.mGet(ids.map((id) => key('portrait', id)));
      return infos.filter((i): i is string => i !== null).map((i) => JSON.parse(i) as PortraitInfo);
    });
  }

  async remove(id: string): Promise<boolean> {
    const [removed] = await this.shared.run(`deleting portrait ${id}`, (c) =>
      Promise.all([c.sRem(key('portraits'), id), c.del([key('portrait', id), key('portrait', id, 'bytes')])]),
    );
    return removed === 1;
  }
}
