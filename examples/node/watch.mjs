// @ts-check
// Watch: a session's output (or a publisher's, by its pub-… id) over WHEP through the SDK, video
// and audio. Prints the frame rate, the picture size and the audio level each second; with
// --seconds, stops that long after the first frame (or gives up when none came within 15 s).
//
//   node examples/node/watch.mjs SESSION_OR_PUBLISH_ID [--seconds N]
//
// Server: XPL_URL (default http://127.0.0.1:8080); credentials: XPL_API_KEY, or XPL_TOKEN (a viewer token).
import wrtc from '@roamhq/wrtc';
import { XplClient } from '../../client/sdk/index.js';

const [id, ...rest] = process.argv.slice(2);
if (!id) {
  console.error('usage: node examples/node/watch.mjs SESSION_OR_PUBLISH_ID [--seconds N]');
  process.exit(2);
}
const seconds = Number(rest.includes('--seconds') ? rest[rest.indexOf('--seconds') + 1] : 'Infinity');
const xpl = new XplClient({ baseUrl: process.env.XPL_URL ?? 'http://127.0.0.1:8080', apiKey: process.env.XPL_API_KEY });

let frames = 0;
let firstFrameAt = 0;
let size = '';
let audioPeak = 0;
let audioChunks = 0;
/** @type {Array<{ stop(): void }>} */
const sinks = [];
const viewer = await xpl.watch(id, {
  token: process.env.XPL_TOKEN,
  RTCPeerConnection: wrtc.RTCPeerConnection,
  onTrack: (track) => {
    if (track.kind === 'video') {
      const sink = new wrtc.nonstandard.RTCVideoSink(track);
      sink.addEventListener('frame', (/** @type {any} */ e) => {
        frames++;
        firstFrameAt ||= Date.now();
        size = `${e.frame.width}x${e.frame.height}`;
      });
      sinks.push(sink);
    } else {
      const sink = new wrtc.nonstandard.RTCAudioSink(track);
      sink.addEventListener('data', (/** @type {any} */ e) => {
        audioChunks++;
        for (const s of e.samples) audioPeak = Math.max(audioPeak, Math.abs(s));
      });
      sinks.push(sink);
    }
  },
});
console.log(`watching ${id} (viewer ${viewer.viewerId})`);

let total = 0;
const started = Date.now();
const report = setInterval(() => {
  total += frames;
  console.log(`${frames} fps ${size}, audio ${audioChunks ? `peak ${audioPeak}` : 'none'}`);
  frames = 0;
  audioPeak = 0;
  audioChunks = 0;
  if (firstFrameAt ? Date.now() - firstFrameAt >= seconds * 1000 : Number.isFinite(seconds) && Date.now() - started >= 15_000) void stop();
}, 1000);

async function stop() {
  clearInterval(report);
  for (const s of sinks) s.stop();
  await viewer.close();
  process.exit(total > 0 ? 0 : 1);
}
process.once('SIGINT', () => void stop());
