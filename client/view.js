// The bare OBS page: /view/SESSION?token=…&bg=transparent|RRGGBB|%23RRGGBB&fit=contain|cover&audio=0
// Plays the session's output — video and the caller's audio — over WHEP (client/sdk), reconnecting
// when the stream drops. SESSION may be a publish id (pub-…): then it plays whatever that publisher
// has live, and waits for it when it has nothing yet.
import { XplClient } from '/sdk/index.js';

const params = new URLSearchParams(location.search);
const sessionId = decodeURIComponent(location.pathname.split('/').pop());
const token = params.get('token') || undefined;
const video = document.getElementById('v');
const isPublisher = sessionId.startsWith('pub-');
const withAudio = params.get('audio') !== '0';

const bg = params.get('bg');
if (bg && bg !== 'transparent') document.body.style.background = /^[0-9a-f]{6}$/i.test(bg) ? `#${bg}` : bg;
if (params.get('fit') === 'cover') video.style.objectFit = 'cover';

const client = new XplClient({ baseUrl: location.origin });
let current = null;
let retry = 500;

async function start() {
  document.body.dataset.state = 'connecting';
  try {
    current = await client.watch(sessionId, { token, audio: withAudio });
    video.srcObject = current.stream;
    // Sound where the page may autoplay it (OBS's browser source does); silent video elsewhere.
    video.muted = !withAudio;
    video.play().catch(() => {
      video.muted = true;
      return video.play();
    }).catch(() => {});
    current.pc.addEventListener('connectionstatechange', () => {
      const s = current && current.pc.connectionState;
      if (s === 'connected') {
        document.body.dataset.state = 'playing';
        retry = 500;
      } else if (s === 'failed' || s === 'closed') restart();
    });
  } catch (err) {
    document.body.dataset.state = 'error';
    document.body.dataset.error = err.code || 'error';
    console.error(err.message);
    // A session that is gone or a token that is refused will not come back by retrying; a
    // publisher with nothing live yet (or reconnecting) will.
    if (['unauthorized', 'forbidden'].includes(err.code) || (err.code === 'not_found' && !isPublisher)) return;
    setTimeout(start, (retry = Math.min(retry * 2, 10000)));
  }
}

function restart() {
  const c = current;
  current = null;
  if (c) c.close();
  setTimeout(start, retry);
}

window.addEventListener('pagehide', () => current && current.close());
start();
