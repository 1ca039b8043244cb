// @ts-check
// A page on another origin using xportrait-live: it loads the SDK from the server (CORS), publishes
// the camera and microphone over WHIP as a standard WHIP encoder does (sendonly, one bundled
// transport, the server's ICE servers), and plays a session's output with its audio over WHEP.
// ?server=URL sets the server; ?auto=publish, or ?auto=watch&id=ID, starts at once.

const $ = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
const params = new URLSearchParams(location.search);
if (params.get('server')) $('server').value = /** @type {string} */ (params.get('server'));

/** The SDK, from the server's own copy, and the credentials typed in (an API key or a token). */
async function connect() {
  const server = $('server').value.trim().replace(/\/+$/, '');
  /** @type {typeof import('../../client/sdk/index.js')} */
  const { XplClient } = await import(`${server}/sdk/index.js`);
  const secret = $('key').value.trim() || undefined;
  const isToken = !!secret && /^xpl[pv]1\./.test(secret);
  return { xpl: new XplClient({ baseUrl: server, apiKey: isToken ? undefined : secret }), token: isToken ? secret : undefined };
}

function fail(/** @type {unknown} */ err) {
  const e = /** @type {{ message?: string, code?: string }} */ (err);
  $('error').textContent = `${e.message ?? err}${e.code ? ` (${e.code})` : ''}`;
  document.body.dataset.error = e.code ?? 'error';
}

async function publish() {
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  const { xpl, token } = await connect();
  const s = await xpl.publish(media, { direction: 'sendonly', token });
  $('session').value = s.id;
  $('watch-id').value = s.id;
  document.body.dataset.published = s.id;
}

async function watch(/** @type {string} */ id) {
  const { xpl, token } = await connect();
  const v = await xpl.watch(id, { token });
  const player = /** @type {HTMLVideoElement} */ (document.getElementById('player'));
  player.srcObject = v.stream;
  document.body.dataset.watching = v.viewerId;
  setInterval(async () => {
    /** @type {Record<string, number>} */
    const s = { framesDecoded: 0, audioPackets: 0, audioEnergy: 0 };
    (await v.pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') s.framesDecoded = r.framesDecoded ?? 0;
      if (r.kind === 'audio') {
        s.audioPackets = r.packetsReceived ?? 0;
        s.audioEnergy = r.totalAudioEnergy ?? 0;
      }
    });
    $('stats').textContent = `${s.framesDecoded} frames, ${s.audioPackets} audio packets`;
    document.body.dataset.stats = JSON.stringify(s);
  }, 500);
}

$('publish').addEventListener('click', () => publish().catch(fail));
$('watch').addEventListener('click', () => watch($('watch-id').value.trim()).catch(fail));
if (params.get('auto') === 'publish') publish().catch(fail);
if (params.get('auto') === 'watch') watch(params.get('id') ?? '').catch(fail);
