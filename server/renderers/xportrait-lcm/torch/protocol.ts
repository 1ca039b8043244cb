/**
 * The torch worker's wire format (models/xportrait/engine/protocol.py is the other side):
 *
 *   u32 LE header length | u32 LE payload length | header (msgpack map) | payload (raw bytes)
 *
 * Requests carry {op, id, …}; replies {id, ok: true, …} or {id, ok: false, error: {code, message}}.
 * Only frames travel as payload (uint8 RGB, S×S×3 each way); everything else is a small header.
 */
import { decode, encode } from '@msgpack/msgpack';

export const MAX_HEADER = 64 * 1024;
export const MAX_PAYLOAD = 64 * 1024 * 1024;

export interface Message {
  header: Record<string, unknown>;
  payload: Buffer;
}

/**
 * A message as the chunks to write, in order: the length prefix with the header, then the payload
 * as it is (a frame is not copied behind its header).
 */
export function encodeMessage(header: Record<string, unknown>, payload?: Uint8Array): Uint8Array[] {
  const h = encode(header);
  const head = Buffer.allocUnsafe(8 + h.byteLength);
  head.writeUInt32LE(h.byteLength, 0);
  head.writeUInt32LE(payload?.byteLength ?? 0, 4);
  head.set(h, 8);
  return payload?.byteLength ? [head, payload] : [head];
}

/** Incremental parser of a socket's byte stream into messages. */
export class MessageReader {
  private chunks: Buffer[] = [];
  private length = 0;

  /** Feeds bytes; returns every message completed by them. Throws on a malformed prefix. */
  push(chunk: Buffer): Message[] {
    this.chunks.push(chunk);
    this.length += chunk.length;
    const out: Message[] = [];
    for (;;) {
      if (this.length < 8) break;
      const head = this.peek(8);
      const hlen = head.readUInt32LE(0);
      const plen = head.readUInt32LE(4);
      if (hlen === 0 || hlen > MAX_HEADER || plen > MAX_PAYLOAD) throw new Error(`bad message lengths: header ${hlen}, payload ${plen}`);
      if (this.length < 8 + hlen + plen) break;
      const all = this.take(8 + hlen + plen);
      const header = decode(all.subarray(8, 8 + hlen)) as Record<string, unknown>;
      if (!header || typeof header !== 'object' || Array.isArray(header)) throw new Error('message header is not a map');
      out.push({ header, payload: all.subarray(8 + hlen) });
    }
    return out;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.length = rest.length;
    return all.subarray(0, n);
  }
}
