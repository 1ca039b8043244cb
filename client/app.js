// xportrait-live web app: webcam → POST /v1/sessions (WHIP-style, non-trickle) → animated
// portrait back on the same transceiver. Plain ES module, standard WebRTC APIs only; live
// controls (portrait, parameters, pause, OBS link) go through the SDK's control socket.
import { XplClient, addCameraTransceiver, iceGathered } from '/sdk/index.js';

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('controls'),
  renderer: $('renderer'),
  apiKey: $('api-key'),
  mic: $('mic'),
  echo: $('echo-cancellation'),
  sound: $('sound'),
  connect: $('connect'),
  status: $('status'),
  error: $('error'),
  output: $('output'),
  preview: $('preview'),
  stats: $('stats'),
  stat: (name) => document.querySelector(`[data-testid="stat-${name}"]`),
};

const ICE_GATHER_CAP_MS = 2000;
const STATS_INTERVAL_MS = 1000;

/** The one live connection, or null. */
let conn = null;
let camera = null;

function setState(state, text = state) {
  document.body.dataset.state = state;
  ui.status.textContent = text;
  ui.connect.textContent = state === 'idle' || state === 'error' ? 'Connect' : 'Disconnect';
  ui.renderer.disabled = ui.apiKey.disabled = ui.mic.disabled = ui.echo.disabled = !(state === 'idle' || state === 'error');
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

/** A readable message for a failed getUserMedia. */
function cameraError(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera access was denied. Allow the camera for this page and try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No usable camera was found.';
    case 'NotReadableError':
      return 'The camera is in use by another program, or could not be started.';
    default:
      return `Could not open the camera: ${err && err.message ? err.message : err}`;
  }
}

/**
 * The camera, and the microphone when asked for (off by default). Echo cancellation is off by
 * default too: a voice that drives an avatar on stream sounds better without it; turn it on when
 * the avatar's audio plays from speakers the microphone hears.
 */
async function startCamera() {
  const audio = ui.mic.checked ? { echoCancellation: ui.echo.checked } : false;
  const key = JSON.stringify(audio);
  if (camera && camera.key === key && camera.stream.getVideoTracks().some((t) => t.readyState === 'live')) return camera.stream;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('This browser cannot open a camera here (getUserMedia needs https or localhost).');
  }
  if (camera) for (const t of camera.stream.getTracks()) t.stop();
  camera = null;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio,
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    });
  } catch (err) {
    throw new Error(cameraError(err));
  }
  camera = { stream, key };
  ui.preview.srcObject = stream;
  return stream;
}

/** The message of a failed API call: the server's `{error:{code,message}}` when there is one. */
async function apiError(res, what) {
  let detail = '';
  try {
    const body = await res.json();
    if (body && body.error) detail = `${body.error.message} (${body.error.code})`;
  } catch {
    /* not JSON */
  }
  return new Error(`${what} failed: HTTP ${res.status}${detail ? ` — ${detail}` : ''}`);
}

function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function connect() {
  showError('');
  setState('connecting', 'opening camera…');
  const stream = await startCamera();
  // The server's STUN/TURN servers, so that the connection works beyond the local network.
  const iceServers = await sdk().iceServers().catch(() => []);
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  conn = { pc, sessionUrl: null, headers: authHeaders(), timer: null, last: null };
  const c = conn;

  // The voice goes with the face; it comes back delayed to match the avatar (muted here unless Sound is on).
  for (const track of stream.getAudioTracks()) pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
  addCameraTransceiver(pc, stream.getVideoTracks()[0], stream);
  pc.addEventListener('track', (e) => {
    ui.output.srcObject = e.streams[0] || new MediaStream([e.track]);
  });
  pc.addEventListener('connectionstatechange', () => {
    if (conn !== c) return;
    const s = pc.connectionState;
    if (s === 'connected') setState('connected', 'connected');
    else if (s === 'disconnected') setState('connecting', 'connection interrupted…');
    else if (s === 'failed') {
      showError('The connection to the server failed (ICE/DTLS). Check the network and try again.');
      disconnect('error');
    }
  });

  setState('connecting', 'gathering network candidates…');
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, ICE_GATHER_CAP_MS);
  if (conn !== c) return;

  setState('connecting', 'starting session…');
  const renderer = ui.renderer.value;
  const url = new URL('/v1/sessions', location.href);
  if (renderer) url.searchParams.set('renderer', renderer);
  const portrait = $('portrait').value;
  if (portrait && portrait !== 'default') url.searchParams.set('portrait', portrait);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...c.headers },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) throw await apiError(res, 'Starting the session');
  const locationHeader = res.headers.get('Location');
  if (locationHeader) c.sessionUrl = new URL(locationHeader, location.href).toString();
  if (c.sessionUrl) c.sessionId = c.sessionUrl.split('/').pop();
  const answer = await res.text();
  if (conn !== c) {
    deleteSession(c);
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  setState('connecting', 'connecting media…');
  ui.stats.hidden = false;
  c.timer = setInterval(() => updateStats(c), STATS_INTERVAL_MS);
  startLive(c);
}

// ---- live controls (control socket) ----

function sdk() {
  return new XplClient({ baseUrl: location.origin, apiKey: ui.apiKey.value.trim() || undefined });
}

function startLive(c) {
  try {
    c.ctl = sdk().control();
    c.ctl.on('error', (err) => err && err.code === 'unauthorized' && showError(`Control socket: ${err.message}`));
  } catch (err) {
    showError(`Live controls unavailable: ${err.message}`);
    return;
  }
  $('live').disabled = false;
  $('pause').textContent = 'Pause';
}

function stopLive(c) {
  if (c && c.ctl) c.ctl.close();
  $('live').disabled = true;
  $('obs-url').hidden = $('obs-copy').hidden = true;
}

/** Runs a live operation on the current session; failures are shown, not thrown. */
async function live(fn) {
  const c = conn;
  if (!c || !c.ctl || !c.sessionId) return;
  try {
    return await fn(c.ctl, c.sessionId);
  } catch (err) {
    showError(`${err.message}${err.code ? ` (${err.code})` : ''}`);
  }
}

let paramTimer = null;
function sendParams() {
  clearTimeout(paramTimer);
  paramTimer = setTimeout(() => {
    const params = { gaze: $('p-gaze').checked, framing: $('p-framing').value };
    for (const el of document.querySelectorAll('[data-param]')) params[el.dataset.param] = Number(el.value);
    const mode = $('bg-mode').value;
    params.background = mode === 'colour' ? { mode, colour: $('bg-colour').value } : mode === 'blur' ? { mode, radius: 12 } : { mode };
    live((ctl, id) => ctl.setParams(id, params));
  }, 80);
}

for (const el of document.querySelectorAll('[data-param]')) {
  el.addEventListener('input', () => {
    el.nextElementSibling.textContent = el.value;
    sendParams();
  });
}
for (const id of ['p-gaze', 'p-framing', 'bg-mode', 'bg-colour']) $(id).addEventListener('change', sendParams);
$('recalibrate').addEventListener('click', () => live((ctl, id) => ctl.recalibrate(id)));
$('pause').addEventListener('click', () =>
  live(async (ctl, id) => {
    const paused = $('pause').textContent === 'Pause';
    await (paused ? ctl.pause(id) : ctl.resume(id));
    $('pause').textContent = paused ? 'Resume' : 'Pause';
  }),
);
$('obs-link').addEventListener('click', () =>
  live(async (ctl, id) => {
    const t = await ctl.createToken(id, 24 * 3600);
    const url = sdk().viewUrl(id, { token: t.token });
    $('obs-url').value = url;
    $('obs-url').hidden = $('obs-copy').hidden = false;
    $('obs-url').select();
  }),
);
$('obs-copy').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('obs-url').value);
    $('obs-copy').textContent = 'Copied';
  } catch {
    $('obs-url').select();
  }
});

async function loadPortraits(selectId) {
  try {
    const list = await sdk().listPortraits();
    const sel = $('portrait');
    sel.replaceChildren(...list.map((p) => new Option(p.id === 'default' ? 'default' : `${p.id.slice(0, 8)} (${p.width}×${p.height})`, p.id)));
    if (selectId) sel.value = selectId;
  } catch {
    /* needs the API key first; the default stays */
  }
}

$('portrait-file').addEventListener('change', async (e) => {
  const file = e.target.files && e.target.files[0];
  if (!file) return;
  showError('');
  try {
    const p = await sdk().uploadPortrait(new Uint8Array(await file.arrayBuffer()), file.type || 'image/jpeg');
    await loadPortraits(p.id);
    await live((ctl, id) => ctl.setPortrait(id, p.id));
  } catch (err) {
    showError(`Portrait upload failed: ${err.message}`);
  }
  e.target.value = '';
});
$('portrait').addEventListener('change', () => live((ctl, id) => ctl.setPortrait(id, $('portrait').value)));
ui.sound.addEventListener('change', () => {
  ui.output.muted = !ui.sound.checked;
});
ui.mic.addEventListener('change', () => startCamera().catch((err) => showError(err.message)));
ui.echo.addEventListener('change', () => ui.mic.checked && startCamera().catch((err) => showError(err.message)));
ui.apiKey.addEventListener('change', () => loadPortraits());

function deleteSession(c) {
  if (!c.sessionUrl) return;
  const url = c.sessionUrl;
  c.sessionUrl = null;
  fetch(url, { method: 'DELETE', headers: c.headers, keepalive: true }).catch(() => {});
}

function disconnect(state = 'idle') {
  const c = conn;
  conn = null;
  if (c) {
    clearInterval(c.timer);
    stopLive(c);
    c.pc.close();
    deleteSession(c);
  }
  ui.output.srcObject = null;
  ui.stats.hidden = true;
  for (const name of ['fps', 'resolution', 'latency', 'bitrate-in', 'bitrate-out']) ui.stat(name).textContent = '–';
  setState(state, state === 'error' ? 'error' : 'idle');
}

function kbps(bytesNow, bytesBefore, ms) {
  if (bytesBefore === undefined || !(ms > 0)) return '–';
  const v = ((bytesNow - bytesBefore) * 8) / ms; // bits per ms = kbit/s
  return v >= 1000 ? `${(v / 1000).toFixed(2)} Mbit/s` : `${v.toFixed(0)} kbit/s`;
}

/** Change of a cumulative counter between two samples. */
function delta(now, before, key) {
  return before && now[key] !== undefined && before[key] !== undefined ? now[key] - before[key] : undefined;
}

/** Mean milliseconds per item of a cumulative seconds counter between two samples (0 if unknown). */
function perItemMs(now, before, sumKey, countKey) {
  if (!now || !before) return 0;
  const ds = delta(now, before, sumKey);
  const dc = delta(now, before, countKey);
  return ds !== undefined && dc > 0 ? (ds / dc) * 1000 : 0;
}

async function updateStats(c) {
  let report;
  try {
    report = await c.pc.getStats();
  } catch {
    return;
  }
  if (conn !== c) return;
  const s = { at: performance.now() };
  report.forEach((r) => {
    if (r.type === 'inbound-rtp' && (r.kind === 'video' || r.mediaType === 'video')) s.in = r;
    else if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.mediaType === 'video')) s.out = r;
    else if (r.type === 'candidate-pair' && (r.nominated || r.selected) && r.state === 'succeeded') s.pair = r;
  });
  const prev = c.last;
  c.last = s;
  const ms = prev ? s.at - prev.at : 0;

  const inb = s.in || {};
  const framesDecoded = delta(inb, prev && prev.in, 'framesDecoded');
  const fps = inb.framesPerSecond ?? (framesDecoded !== undefined && ms > 0 ? (framesDecoded * 1000) / ms : undefined);
  ui.stat('fps').textContent = fps !== undefined ? fps.toFixed(1) : '–';

  const w = inb.frameWidth || ui.output.videoWidth;
  const h = inb.frameHeight || ui.output.videoHeight;
  ui.stat('resolution').textContent = w && h ? `${w}×${h}` : '–';

  ui.stat('bitrate-in').textContent = s.in ? kbps(inb.bytesReceived, prev && prev.in && prev.in.bytesReceived, ms) : '–';
  ui.stat('bitrate-out').textContent = s.out ? kbps(s.out.bytesSent, prev && prev.out && prev.out.bytesSent, ms) : '–';

  // Round trip ≈ network RTT + receive jitter buffer + our encode + our decode (the server's own
  // processing time is not visible in the stats).
  const rttMs = s.pair && s.pair.currentRoundTripTime !== undefined ? s.pair.currentRoundTripTime * 1000 : undefined;
  const jitterMs = perItemMs(s.in, prev && prev.in, 'jitterBufferDelay', 'jitterBufferEmittedCount');
  const decodeMs = perItemMs(s.in, prev && prev.in, 'totalDecodeTime', 'framesDecoded');
  const encodeMs = perItemMs(s.out, prev && prev.out, 'totalEncodeTime', 'framesEncoded');
  ui.stat('latency').textContent = rttMs !== undefined ? `${(rttMs + jitterMs + decodeMs + encodeMs).toFixed(0)} ms (rtt ${rttMs.toFixed(0)})` : '–';
}

async function loadServerDefault() {
  try {
    const res = await fetch('/healthz');
    const body = await res.json();
    if (body && body.defaultRenderer) $('renderer').querySelector('[data-testid="renderer-default"]').textContent = `server default (${body.defaultRenderer})`;
  } catch {
    /* the app still works without it */
  }
}

ui.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (conn) {
    disconnect();
    return;
  }
  try {
    await connect();
  } catch (err) {
    showError(err && err.message ? err.message : String(err));
    disconnect('error');
  }
});

window.addEventListener('pagehide', () => {
  if (conn) deleteSession(conn);
});

setState('idle');
loadServerDefault();
loadPortraits();
startCamera().catch((err) => showError(err.message));
