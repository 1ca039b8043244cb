// Control from Deno: the same SDK, with Deno's own fetch and WebSocket. Lists the sessions and
// follows the first one's stats twice a second.
//
//   deno run --allow-net --allow-env examples/deno/control.ts [--seconds N]
//
// Server: XPL_URL (default http://127.0.0.1:8080); credentials: XPL_API_KEY.
// (Publish and watch under Deno: the Node examples run as they are, see examples/README.md.)
import { XplClient } from '../../client/sdk/index.js';

const seconds = Deno.args.includes('--seconds') ? Number(Deno.args[Deno.args.indexOf('--seconds') + 1]) : Infinity;
const xpl = new XplClient({ baseUrl: Deno.env.get('XPL_URL') ?? 'http://127.0.0.1:8080', apiKey: Deno.env.get('XPL_API_KEY') });
const health = await xpl.health();
console.log(`server ${health.status}, ${health.sessions} session(s), default renderer ${health.defaultRenderer}`);

const ctl = xpl.control();
await ctl.ready();
const [first] = await ctl.listSessions();
let events = 0;
if (first) {
  await ctl.subscribeStats(first.id, 2, (s) => {
    events++;
    console.log(`${first.id.slice(0, 8)}: ${s.outFps} fps, latency p50 ${s.latencyMs.p50} ms`);
  });
}
setTimeout(() => {
  ctl.close();
  console.log(first ? `${events} stats events` : 'no session to follow');
  Deno.exit(first && events === 0 ? 1 : 0);
}, Math.min(seconds * 1000, 2 ** 31 - 1));
