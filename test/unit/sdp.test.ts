import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XplError } from '../../server/errors.ts';
import { MAX_SDP_BYTES, inspectOffer, inspectViewerOffer, withoutUnusableFormats } from '../../server/rtc/sdp.ts';

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
  fails(offer(videoSection('sendrecv', ['H264'])), 'unsupported_codec', /H264.*VP8.*packetization mode 0/);
});

/** A video section as browsers and OBS offer H.264: several profiles, both packetization modes, RTX for each. */
const h264Section = (codecs: string[]) =>
  [
    `m=video 9 UDP/TLS/RTP/SAVPF 102 103 104 105 ${codecs.includes('VP8') ? '96 97' : ''}`.trim(),
    'c=IN IP4 0.0.0.0',
    'a=mid:0',
    'a=sendrecv',
    ...(codecs.includes('VP8') ? ['a=rtpmap:96 VP8/90000', 'a=rtcp-fb:96 nack', 'a=rtpmap:97 rtx/90000', 'a=fmtp:97 apt=96'] : []),
    'a=rtpmap:102 H264/90000',
    'a=rtcp-fb:102 nack pli',
    'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f',
    'a=rtpmap:103 rtx/90000',
    'a=fmtp:103 apt=102',
    'a=rtpmap:104 H264/90000',
    'a=rtcp-fb:104 nack pli',
    'a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
    'a=rtpmap:105 rtx/90000',
    'a=fmtp:105 apt=104',
  ].join('\r\n');

test('the video codec: VP8 when offered, else H.264 in packetization mode 1', () => {
  assert.equal(inspectOffer(offer(h264Section(['VP8', 'H264']))).videoCodec, 'vp8');
  const h = inspectOffer(offer(h264Section(['H264'])));
  assert.equal(h.videoCodec, 'h264');
  fails(offer(h264Section(['H264']).replace('packetization-mode=1', 'packetization-mode=0')), 'unsupported_codec', /packetization mode 0/);
});

test('formats the assembler cannot read (H.264 mode 0 and its RTX) are taken out of the offer before negotiation', () => {
  const cleaned = withoutUnusableFormats(offer(h264Section(['H264'])));
  assert.match(cleaned, /^m=video 9 UDP\/TLS\/RTP\/SAVPF 104 105\r$/m);
  assert.doesNotMatch(cleaned, /a=(rtpmap|fmtp|rtcp-fb):10[23] /);
  assert.match(cleaned, /a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1/);
  assert.match(cleaned, /a=fmtp:105 apt=104/);
  const untouched = offer(videoSection('sendrecv'));
  assert.equal(withoutUnusableFormats(untouched), untouched);
});

test('a viewer offer must carry the codec the session sends', () => {
  const viewer = (codecs: string[]) => offer(h264Section(codecs).replace('a=sendrecv', 'a=recvonly'));
  inspectViewerOffer(viewer(['VP8', 'H264']), 'vp8');
  inspectViewerOffer(viewer(['H264']), 'h264');
  assert.throws(() => inspectViewerOffer(viewer(['H264']), 'vp8'), (e: unknown) => e instanceof XplError && e.code === 'unsupported_codec' && /VP8/.test(e.message));
  assert.throws(() => inspectViewerOffer(viewer(['H264']).replace('packetization-mode=1', 'packetization-mode=0'), 'h264'), /H\.264 \(packetization mode 1\)/);
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
