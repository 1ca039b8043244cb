import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XplError } from '../../server/errors.ts';
import { MAX_SDP_BYTES, inspectOffer } from '../../server/rtc/sdp.ts';

const FP = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, '0').toUpperCase()).join(':');

const offer = (video: string, extra = '') =>
  [
    'v=0',
    'o=- 1 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    `a=fingerprint:sha-256 ${FP}`,
    extra,
    video,
  ]
    .filter(Boolean)
    .join('\r\n') + '\r\n';

const videoSection = (dir: string, codecs = ['VP8']) =>
  [
    `m=video 9 UDP/TLS/RTP/SAVPF ${codecs.map((_, i) => 96 + i).join(' ')}`,
    'c=IN IP4 0.0.0.0',
    'a=mid:0',
    `a=${dir}`,
    ...codecs.map((c, i) => `a=rtpmap:${96 + i} ${c}/90000`),
  ].join('\r\n');

function fails(sdp: string, code: XplError['code'], pattern: RegExp) {
  assert.throws(() => inspectOffer(sdp), (e: unknown) => e instanceof XplError && e.code === code && pattern.test(e.message));
}

test('a sendrecv VP8 offer is accepted and summarised', () => {
  const s = inspectOffer(offer(videoSection('sendrecv', ['VP8', 'H264'])));
  assert.equal(s.videoDirection, 'sendrecv');
  assert.deepEqual(s.videoCodecs, ['VP8', 'H264']);
  assert.equal(s.mediaSections, 1);
});

test('a sendonly offer (WHIP encoder) is accepted as ingest only', () => {
  assert.equal(inspectOffer(offer(videoSection('sendonly'))).videoDirection, 'sendonly');
});

test('garbage is rejected as bad_sdp', () => {
  fails('hello world', 'bad_sdp', /must start with "v=0"/);
  fails('v=0\r\nthis is not sdp\r\n', 'bad_sdp', /line 2/);
  fails('v=0\r\nm=video banana\r\n', 'bad_sdp', /malformed m-line/);
});

test('an offer without video, or with video the server cannot use, is rejected', () => {
  fails(offer('m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2'), 'no_video', /no video m-line/);
  fails(offer(videoSection('recvonly')), 'no_video', /"recvonly"/);
  fails(offer(videoSection('sendrecv', ['H264'])), 'unsupported_codec', /H264.*VP8/);
});

test('hostile sizes are bounded', () => {
  fails(offer(videoSection('sendrecv'), 'a=x-junk:' + 'x'.repeat(MAX_SDP_BYTES)), 'too_large', /larger than/);
  fails(offer(videoSection('sendrecv'), 'a=x-junk:' + 'x'.repeat(5000)), 'bad_sdp', /longer than 4096/);
  const many = Array.from({ length: 9 }, () => videoSection('sendrecv')).join('\r\n');
  fails(offer(many), 'bad_sdp', /more than 8 media sections/);
});

test('a DTLS fingerprint must be present and well formed', () => {
  const good = offer(videoSection('sendrecv'));
  assert.equal(inspectOffer(good.replace('sha-256', 'SHA-256')).videoDirection, 'sendrecv', 'hash names are case-insensitive');
  fails(good.replace(/a=fingerprint:.*\r\n/, ''), 'bad_sdp', /no a=fingerprint/);
  fails(good.replace(`sha-256 ${FP}`, 'sha-256 ZZ:not:hex'), 'bad_sdp', /32 hex bytes/);
  fails(good.replace(`sha-256 ${FP}`, 'md9 00:11'), 'bad_sdp', /unknown hash "md9"/);
  fails(good.replace(`sha-256 ${FP}`, `sha-256 ${FP.slice(3)}`), 'bad_sdp', /32 hex bytes/);
  fails(good.replace(`sha-256 ${FP}`, 'sha-256'), 'bad_sdp', /malformed a=fingerprint/);
});
