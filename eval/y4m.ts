/** Minimal YUV4MPEG2 (4:2:0) reader and writer. */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { i420Size, type I420Frame } from '../server/media/frame.ts';

export interface Y4mInfo {
  width: number;
  height: number;
  fps: number;
}

export class Y4mWriter {
  private fd: number;
  constructor(path: string, readonly info: Y4mInfo) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, `YUV4MPEG2 W${info.width} H${info.height} F${Math.round(info.fps)}:1 Ip A1:1 C420jpeg\n`);
  }
  write(f: I420Frame): void {
    if (f.width !== this.info.width || f.height !== this.info.height) throw new Error('y4m: frame size differs from the header');
    writeSync(this.fd, 'FRAME\n');
    writeSync(this.fd, f.data, 0, i420Size(f.width, f.height));
  }
  close(): void {
    closeSync(this.fd);
  }
}

export function readY4m(path: string): { info: Y4mInfo; frames: I420Frame[] } {
  const buf = readFileSync(path);
  const nl = buf.indexOf(0x0a);
  const header = buf.subarray(0, nl).toString('latin1');
  if (!header.startsWith('YUV4MPEG2 ')) throw new Error(`${path}: not a y4m file`);
  let width = 0;
  let height = 0;
  let fps = 30;
  for (const tok of header.split(' ').slice(1)) {
    if (tok[0] === 'W') width = Number(tok.slice(1));
    else if (tok[0] === 'H') height = Number(tok.slice(1));
    else if (tok[0] === 'F') {
      const [a, b] = tok.slice(1).split(':').map(Number);
      fps = a / (b || 1);
    } else if (tok[0] === 'C' && !tok.startsWith('C420')) throw new Error(`${path}: only 4:2:0 y4m is supported (${tok})`);
  }
  const size = i420Size(width, height);
  const frames: I420Frame[] = [];
  let off = nl + 1;
  while (off < buf.length) {
    const e = buf.indexOf(0x0a, off);
    if (e < 0 || !buf.subarray(off, off + 5).toString('latin1').startsWith('FRAME')) break;
    const start = e + 1;
    if (start + size > buf.length) break;
    frames.push({ width, height, data: new Uint8Array(buf.buffer, buf.byteOffset + start, size), timestamp: (frames.length * 1000) / fps });
    off = start + size;
  }
  return { info: { width, height, fps }, frames };
}
