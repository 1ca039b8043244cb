/**
 * One Unix-socket connection to the torch worker: requests matched to replies by id, every pending
 * request rejected when the connection closes (the worker died, or was killed as hung), so no
 * caller waits on a worker that is gone.
 */
import { createConnection, type Socket } from 'node:net';
import { XplError, type ErrorCode } from '../../../errors.ts';
import { encodeMessage, MessageReader, type Message } from './protocol.ts';

type Pending = { resolve: (m: Message) => void; reject: (e: Error) => void };

const CODES = new Set<string>(['bad_request', 'not_found', 'internal']);

export class WorkerConnection {
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new MessageReader();
  private nextId = 1;
  private closedWith: Error | null = null;
  /** Bytes written and read on this connection (frames and headers). */
  sent = 0;
  received = 0;
  /** Called once when the connection ends for any reason but close(). */
  onLost: (err: Error) => void = () => {};

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      let msgs: Message[];
      try {
        msgs = this.reader.push(chunk);
      } catch (err) {
        this.fail(new XplError('internal', `torch worker sent a malformed message: ${(err as Error).message}`));
        return;
      }
      for (const m of msgs) {
        const p = this.pending.get(m.header.id as number);
        if (!p) continue;
        this.pending.delete(m.header.id as number);
        if (m.header.ok) p.resolve(m);
        else {
          const e = (m.header.error ?? {}) as { code?: string; message?: string };
          const code = (CODES.has(e.code ?? '') ? e.code : 'internal') as ErrorCode;
          p.reject(Object.assign(new XplError(code, `torch worker: ${e.message ?? 'error'}`), { workerCode: e.code }));
        }
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('torch worker connection closed')));
  }

  /** Connects once (rejects with the socket error: ENOENT / ECONNREFUSED while the worker is not up). */
  static connect(path: string): Promise<WorkerConnection> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new WorkerConnection(s));
      });
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /**
   * Sends a request and resolves with its reply. The payload is written as it is, not copied: the
   * callers that send one await the reply, which the worker sends only after reading the whole
   * request, so their buffer is not reused before it is written.
   */
  call(op: string, fields: Record<string, unknown> = {}, payload?: Uint8Array): Promise<Message> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    const chunks = encodeMessage({ op, id, ...fields }, payload);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.cork();
      for (const c of chunks) {
        this.sent += c.byteLength;
        this.socket.write(c);
      }
      this.socket.uncork();
    });
  }

  private fail(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.socket.destroy();
    this.onLost(err);
  }

  close(): void {
    if (this.closedWith) return;
    this.onLost = () => {};
    this.fail(new Error('torch worker connection closed by this side'));
  }
}
