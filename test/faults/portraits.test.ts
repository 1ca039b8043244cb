/**
 * Bad portraits and broken uploads: a corrupt or truncated image, a 20000×20000 PNG (small on
 * the wire, 400 megapixels decoded), a picture with no face, four faces in one picture, and
 * clients that hang up halfway through an upload. Each gets a precise answer quickly, and the
 * server stays healthy and serves the next request.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { serverExists, startServer, type ServerHandle } from '../support/server.ts';
import { minimalOffer } from './offer.ts';
import { sleep } from './support.ts';

const skip = !serverExists() && 'server/main.ts not present';
const FIX = new URL('../fixtures/', import.meta.url);
let srv: ServerHandle;

before(async () => {
  if (skip) return;
  srv = await startServer({ args: ['--renderer', 'passthrough', '--log-level', 'warn'] });
});
after(async () => {
  if (skip) return;
  assert.equal(await srv.stop(), 0, 'the server exits cleanly');
});

async function upload(body: Uint8Array, type = 'image/png'): Promise<{ status: number; json: any; ms: number }> {
  const t0 = performance.now();
  const r = await fetch(`${srv.url}/v1/portraits`, { method: 'POST', headers: { 'content-type': type }, body: body as Uint8Array<ArrayBuffer> });
  const json = await r.json().catch(() => null);
  return { status: r.status, json, ms: performance.now() - t0 };
}

async function healthy(): Promise<void> {
  const r = await fetch(`${srv.url}/healthz`);
  assert.equal(r.status, 200);
}

async function portraitCount(): Promise<number> {
  return (await (await fetch(`${srv.url}/v1/portraits`)).json()).portraits.length;
}

async function rssMiB(): Promise<number> {
  const t = await (await fetch(`${srv.url}/metrics`)).text();
  return Number(/^xpl_process_resident_memory_bytes (\S+)/m.exec(t)?.[1]) / 2 ** 20;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A valid 1-bit greyscale PNG of side × side white pixels (≈ 50 KB for 20000²). */
function hugeSolidPng(side: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const rowBytes = 1 + Math.ceil(side / 8);
  const raw = Buffer.alloc(rowBytes * side, 0xff);
  for (let r = 0; r < side; r++) raw[r * rowBytes] = 0; // filter: none
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', new Uint8Array(0))]);
}

test('a picture with no face → 422 no_face', { skip }, async () => {
  const r = await upload(await readFile(new URL('coffee.png', FIX)));
  assert.equal(r.status, 422);
  assert.equal(r.json.error.code, 'no_face');
});

test('corrupt and truncated images → 415 with the decoder\'s reason; nothing is stored', { skip }, async () => {
  const before = await portraitCount();
  const png = await readFile(new URL('astronaut.png', FIX));
  const jpg = await readFile(new URL('grace_hopper.jpg', FIX));
  const cases: Array<[string, Uint8Array, string]> = [
    ['PNG signature + IHDR, then garbage', Buffer.concat([png.subarray(0, 33), Buffer.alloc(4000, 7)]), 'image/png'],
    ['first half of a PNG', png.subarray(0, png.length >> 1), 'image/png'],
    ['first half of a JPEG', jpg.subarray(0, jpg.length >> 1), 'image/jpeg'],
    ['random bytes labelled JPEG', Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff)), 'image/jpeg'],
    ['a JPEG labelled WebP', jpg, 'image/webp'],
  ];
  for (const [what, body, type] of cases) {
    const r = await upload(body, type);
    // A JPEG sent as WebP is still a readable image: the server sniffs the bytes, so 201 is right there.
    if (what === 'a JPEG labelled WebP') {
      assert.ok(r.status === 201 || r.status === 415, `${what}: ${r.status}`);
      if (r.status === 201) await fetch(`${srv.url}/v1/portraits/${r.json.id}`, { method: 'DELETE' });
      continue;
    }
    assert.equal(r.status, 415, `${what}: ${r.status} ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'unsupported_media_type');
    assert.ok(r.json.error.message.length > 20, what);
  }
  assert.equal(await portraitCount(), before);
  await healthy();
});

test('a 20000×20000 PNG (400 megapixels in ~76 KB) is refused with 413 in under 3 s, without a memory spike', { skip, timeout: 30_000 }, async (t) => {
  const png = hugeSolidPng(20000);
  const meta = await sharp(png, { limitInputPixels: false }).metadata();
  assert.equal(meta.width, 20000, 'the test image is what it claims');
  const rss0 = await rssMiB();
  const r = await upload(png);
  const rss1 = await rssMiB();
  t.diagnostic(`${png.length} bytes → ${r.status} in ${r.ms.toFixed(0)} ms; server RSS ${rss0.toFixed(0)} → ${rss1.toFixed(0)} MiB`);
  assert.equal(r.status, 413, JSON.stringify(r.json));
  assert.equal(r.json.error.code, 'too_large');
  assert.ok(r.ms < 3000, `refused in ${r.ms.toFixed(0)} ms`);
  assert.ok(rss1 - rss0 < 200, `RSS grew ${(rss1 - rss0).toFixed(0)} MiB`);
  await healthy();
});

test('four portraits tiled 2×2 → 201; the largest face is the one used', { skip, timeout: 30_000 }, async (t) => {
  // Tiles of different sizes, so "the largest face" is unambiguous: Grace Hopper's 600² tile at top right.
  const tile = (f: string, side: number) => sharp(new URL(f, FIX).pathname).resize(side, side, { fit: 'cover' }).png().toBuffer();
  const [a, b, c, d] = await Promise.all([tile('astronaut.png', 400), tile('grace_hopper.jpg', 600), tile('grace_hopper.jpg', 400), tile('astronaut.png', 400)]);
  const img = await sharp({ create: { width: 1000, height: 1000, channels: 3, background: '#808080' } })
    .composite([
      { input: a, left: 0, top: 0 },
      { input: b, left: 400, top: 0 },
      { input: c, left: 0, top: 600 },
      { input: d, left: 600, top: 600 },
    ])
    .png()
    .toBuffer();
  const r = await upload(img);
  t.diagnostic(JSON.stringify(r.json));
  assert.equal(r.status, 201);
  const f = r.json.face;
  assert.ok(f.x >= 400 && f.x + f.width <= 1000 && f.y >= 0 && f.y + f.height <= 600, `face box ${JSON.stringify(f)} lies in the largest (top-right) tile`);
  assert.ok(f.width > 150, `the face box is the large face's (${f.width.toFixed(0)} px wide)`);
  await fetch(`${srv.url}/v1/portraits/${r.json.id}`, { method: 'DELETE' });
});

/** Sends the headers and half of a `total`-byte body, then drops the connection. */
function abortMidUpload(path: string, type: string, total: number): Promise<void> {
  return new Promise((resolve) => {
    const url = new URL(path, srv.url);
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': type, 'content-length': String(total) } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.on('response', () => resolve());
    req.write(Buffer.alloc(total >> 1, 0x42), () => setTimeout(() => req.destroy(), 50));
  });
}

test('clients that hang up halfway through an upload: nothing is stored, the server stays healthy', { skip, timeout: 30_000 }, async () => {
  const portraits0 = await portraitCount();
  for (let i = 0; i < 20; i++) {
    await abortMidUpload('/v1/portraits', 'image/png', 400_000);
    await abortMidUpload('/v1/sessions', 'application/sdp', 8_000);
  }
  await sleep(500);
  await healthy();
  assert.equal(await portraitCount(), portraits0);
  assert.equal((await (await fetch(`${srv.url}/v1/sessions`)).json()).sessions.length, 0);
  // And the next real requests work.
  const ok = await upload(await readFile(new URL('grace_hopper.jpg', FIX)), 'image/jpeg');
  assert.equal(ok.status, 201);
  await fetch(`${srv.url}/v1/portraits/${ok.json.id}`, { method: 'DELETE' });
  const s = await fetch(`${srv.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: minimalOffer() });
  await s.arrayBuffer();
  assert.equal(s.status, 201);
  const d = await fetch(new URL(s.headers.get('location')!, srv.url), { method: 'DELETE' });
  assert.equal(d.status, 204);
});
