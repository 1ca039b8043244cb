import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { i420Size } from '../../server/media/frame.ts';
import { parseY4m, parseY4mHeader, readY4m, y4mHeader } from '../../server/media/y4m.ts';
import { writePatternY4m } from '../support/y4m.ts';
import { readPatternId } from '../support/pattern.ts';

test('header is written and parsed', () => {
  const line = y4mHeader({ width: 640, height: 480, fps: 30 });
  assert.equal(line, 'YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n');
  assert.deepEqual(parseY4mHeader(line), { width: 640, height: 480, fpsNum: 30, fpsDen: 1, colorspace: '420jpeg' });
  assert.deepEqual(parseY4mHeader('YUV4MPEG2 W320 H240 F30000:1001 It A0:0 C420 XYSCSS=420'), {
    width: 320, height: 240, fpsNum: 30000, fpsDen: 1001, colorspace: '420',
  });
  assert.throws(() => parseY4mHeader('YUV4MPEG2 W320 H240 C444'), /unsupported colour space/);
  assert.throws(() => parseY4mHeader('RIFF W320 H240'), /signature/);
  assert.throws(() => y4mHeader({ width: 641, height: 480, fps: 30 }), /even/);
});

test('pattern file round-trips and carries increasing ids', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'y4m-'));
  try {
    const path = join(dir, 'p.y4m');
    await writePatternY4m(path, { width: 640, height: 480, fps: 30, frames: 5, firstId: 10 });
    const size = (await stat(path)).size;
    const header = y4mHeader({ width: 640, height: 480, fps: 30 }).length;
    assert.equal(size, header + 5 * (6 + i420Size(640, 480)));
    const f = await readY4m(path);
    assert.equal(f.width, 640);
    assert.equal(f.height, 480);
    assert.equal(f.frames.length, 5);
    assert.deepEqual(f.frames.map(readPatternId), [10, 11, 12, 13, 14]);
    assert.notDeepEqual(f.frames[0].data, f.frames[1].data);

    // Frame headers may carry parameters; a truncated file is an error.
    const raw = await readFile(path);
    const withParams = Buffer.concat([raw.subarray(0, header), Buffer.from('FRAME Ixyz\n'), raw.subarray(header + 6, header + 6 + i420Size(640, 480))]);
    assert.equal(parseY4m(withParams).frames.length, 1);
    await writeFile(join(dir, 't.y4m'), raw.subarray(0, raw.length - 10));
    await assert.rejects(readY4m(join(dir, 't.y4m')), /truncated frame 4/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
