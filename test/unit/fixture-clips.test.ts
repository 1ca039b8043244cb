/**
 * The real driving clips (test/fixtures/clips): every frame strip loads with its sidecar, its
 * still window lies inside the clip, and it says where it came from under a permissive licence
 * (the evaluation's footage must be free to redistribute without copyleft terms).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadClip, sidecarPath, type StripInfo } from '../../eval/clip.ts';

const DIR = new URL('../fixtures/clips/', import.meta.url);
const strips = readdirSync(DIR).filter((f) => f.endsWith('.jpg')).sort();
const sources = readFileSync(new URL('../fixtures/SOURCES.md', import.meta.url), 'utf8');

test('there are at least two real talking-face clips', () => {
  assert.ok(strips.length >= 2, `clips: ${strips.join(', ')}`);
});

for (const file of strips) {
  test(`${file}: loads, still window inside, source and permissive licence recorded`, async () => {
    const path = new URL(file, DIR).pathname;
    const info = JSON.parse(readFileSync(sidecarPath(path), 'utf8')) as StripInfo;
    const clip = await loadClip(path);
    assert.equal(clip.frames.length, info.frames);
    assert.equal(clip.fps, info.fps);
    assert.ok(info.frames / info.fps >= 5, `${(info.frames / info.fps).toFixed(1)} s of footage`);
    const [s0, s1] = info.still ?? [NaN, NaN];
    assert.ok(s0 >= 0 && s1 <= info.frames && s1 - s0 >= 10, `still window [${s0}, ${s1})`);
    assert.match(info.source ?? '', /md5 [0-9a-f]{32}/, 'source names the original file and its md5');
    assert.match(info.command ?? '', /^ffmpeg /, 'the command that made the strip');
    assert.match(info.licence ?? '', /\b(MIT|BSD|Apache|CC0|public domain|zlib)\b/i);
    assert.doesNotMatch(info.licence ?? '', /GPL|BY-SA|share-?alike/i);
    assert.ok(sources.includes(`clips/${file}`), `SOURCES.md lists clips/${file}`);
  });
}
