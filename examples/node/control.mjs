// @ts-check
// Control: the WebSocket control API through the SDK. Lists the sessions, then follows the first
// one: its stats twice a second, a parameter change, and the lifecycle events of every session.
//
//   node examples/node/control.mjs [--seconds N]
//
// Server: XPL_URL (default http://127.0.0.1:8080); credentials: XPL_API_KEY.
import WebSocket from 'ws';
import { XplClient } from '../../client/sdk/index.js';

const args = process.argv.slice(2);
const seconds = Number(args.includes('--seconds') ? args[args.indexOf('--seconds') + 1] : 'Infinity');
// Node 20 has no global WebSocket; the `ws` package's is passed in (Node 22 and Deno have one).
const xpl = new XplClient({ baseUrl: process.env.XPL_URL ?? 'http://127.0.0.1:8080', apiKey: process.env.XPL_API_KEY, WebSocket });
const ctl = xpl.control();
await ctl.ready();

const sessions = await ctl.listSessions();
console.log(`${sessions.length} session(s)${sessions.map((s) => `\n  ${s.id} ${s.renderer} ${s.state}, ${s.stats.outFps} fps out`).join('')}`);
ctl.on('session.created', (e) => console.log(`created ${e.session.id}`));
ctl.on('session.closed', (e) => console.log(`closed ${e.session}: ${e.reason}`));

let statsEvents = 0;
const first = sessions[0];
if (first) {
  await ctl.subscribeStats(first.id, 2, (s) => {
    statsEvents++;
    console.log(`${first.id.slice(0, 8)}: ${s.outFps} fps, latency p50 ${s.latencyMs.p50} ms, face ${s.faceFound}`);
  });
  const params = await ctl.setParams(first.id, { expressionGain: 1.2 });
  console.log(`params now ${JSON.stringify(params)}`);
}

setTimeout(() => {
  ctl.close();
  console.log(first ? `${statsEvents} stats events` : 'no session to follow');
  process.exit(first && statsEvents === 0 ? 1 : 0);
}, Math.min(seconds * 1000, 2 ** 31 - 1));
