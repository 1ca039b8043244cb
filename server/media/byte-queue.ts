/**
 * Bytes arriving in chunks from a pipe, read back in exact lengths: a decoded picture (hundreds of
 * kilobytes) arrives in 64 KiB pieces, and gluing them with Buffer.concat on every piece would copy
 * each picture many times over. Chunks are kept as they come and copied once, into the buffer the
 * caller reads into.
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Read offset into chunks[0]. */
  private head = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Byte at `offset` from the read position (offset < length). */
  at(offset: number): number {
    let o = offset + this.head;
    for (const c of this.chunks) {
      if (o < c.length) return c[o];
      o -= c.length;
    }
    throw new RangeError(`ByteQueue.at(${offset}) past ${this.total} bytes`);
  }

  /** Offset of the first `byte` at or after `from`, within the first `limit` bytes; -1 if none. */
  indexOf(byte: number, limit = this.total, from = 0): number {
    const end = Math.min(limit, this.total);
    let base = -this.head;
    for (const c of this.chunks) {
      const start = Math.max(0, from - base);
      const stop = Math.min(c.length, end - base);
      if (start < stop) {
        const i = c.subarray(start, stop).indexOf(byte);
        if (i >= 0) return base + start + i;
      }
      base += c.length;
      if (base >= end) break;
    }
    return -1;
  }

  /** Copies the next `target.length` bytes into `target` and consumes them (caller checks length first). */
  readInto(target: Uint8Array): void {
    const n = target.length;
    if (n > this.total) throw new RangeError(`ByteQueue.readInto(${n}) with ${this.total} bytes queued`);
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const take = Math.min(c.length - this.head, n - done);
      target.set(c.subarray(this.head, this.head + take), done);
      done += take;
      this.head += take;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.total -= n;
  }

  /** Consumes `n` bytes. */
  skip(n: number): void {
    if (n > this.total) throw new RangeError(`ByteQueue.skip(${n}) with ${this.total} bytes queued`);
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      const take = Math.min(c.length - this.head, left);
      left -= take;
      this.head += take;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.total -= n;
  }

  /** Little-endian uint32 at `offset` from the read position. */
  u32le(offset: number): number {
    return (this.at(offset) | (this.at(offset + 1) << 8) | (this.at(offset + 2) << 16) | (this.at(offset + 3) << 24)) >>> 0;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.total = 0;
  }
}
