// @ts-check
// Publish: a synthetic camera (a moving square) and a 440 Hz tone go to the server as the driving
// input (WHIP, through the SDK); the animated video and the relayed audio come back on the same
// connection. Prints the session, a link to watch it, and what comes back each second.
//
//   node examples/node/publish.mjs [--seconds N] [--renderer NAME]
//
// Server: XPL_URL (default http://127.0.0.1:8080); credentials: XPL_API_KEY, or XPL_TOKEN (a publish token).
// WebRTC in Node comes from @roamhq/wrtc (libwebrtc), a dev dependency of this repository.
import wrtc from '@roamhq/wrtc';
import { XplClient } from '../../client/sdk/index.js';

const args = process.argv.slice(2);
const arg = (/** @type {string} */ name, /** @type {string | undefined} */ fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const seconds = Number(arg('seconds', 'Infinity'));
const renderer = /** @type {import('../../client/sdk/index.js').RendererName | undefined} */ (arg('renderer', undefined));
const xpl = new XplClient({ baseUrl: process.env.XPL_URL ?? 'http://127.0.0.1:8080', apiKey: process.env.XPL_API_KEY });
const token = process.env.XPL_TOKEN;

const W = 320;
const H = 240;
const RATE = 48000;
const video = new wrtc.nonstandard.RTCVideoSource();
const audio = new wrtc.nonstandard.RTCAudioSource();
const media = new wrtc.MediaStream([video.createTrack(), audio.createTrack()]);

let framesBack = 0;
let audioBack = 0;
/** @type {Array<{ stop(): void }>} */
const sinks = [];
const session = await xpl.publish(media, {
  RTCPeerConnection: wrtc.RTCPeerConnection,
  renderer,
  token,
  onTrack: (track) => {
    const sink = track.kind === 'video' ? new wrtc.nonstandard.RTCVideoSink(track) : new wrtc.nonstandard.RTCAudioSink(track);
    sink.addEventListener(track.kind === 'video' ? 'frame' : 'data', () => (track.kind === 'video' ? framesBack++ : audioBack++));
    sinks.push(sink);
  },
});
console.log(`session ${session.id}`);
console.log(`watch it: node examples/node/watch.mjs ${session.id}`);

// 30 fps of a square moving over grey, 10 ms chunks of a tone.
const frame = new Uint8Array((W * H * 3) / 2);
const tone = new Int16Array(RATE / 100);
let n = 0;
const sendVideo = setInterval(() => {
  frame.fill(128);
  frame.fill(60, 0, W * H);
  const x0 = (n++ * 4) % (W - 40);
  for (let y = 100; y < 140; y++) frame.fill(230, y * W + x0, y * W + x0 + 40);
  video.onFrame({ width: W, height: H, data: frame });
}, 33);
let t = 0;
const sendAudio = setInterval(() => {
  for (let i = 0; i < tone.length; i++) tone[i] = Math.round(6000 * Math.sin((2 * Math.PI * 440 * t++) / RATE));
  audio.onData({ samples: tone, sampleRate: RATE, bitsPerSample: 16, channelCount: 1, numberOfFrames: tone.length });
}, 10);

const started = Date.now();
const report = setInterval(() => {
  console.log(`${Math.round((Date.now() - started) / 1000)} s: ${framesBack} video frames and ${audioBack} audio chunks back`);
  if (Date.now() - started >= seconds * 1000) void stop();
}, 1000);

async function stop() {
  clearInterval(sendVideo);
  clearInterval(sendAudio);
  clearInterval(report);
  for (const s of sinks) s.stop();
  for (const track of media.getTracks()) track.stop();
  await session.close();
  console.log(framesBack > 0 ? 'done' : 'no video came back');
  // Exit at once: @roamhq/wrtc can crash while node tears down its native objects.
  process.exit(framesBack > 0 ? 0 : 1);
}
process.once('SIGINT', () => void stop());
