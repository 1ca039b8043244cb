/**
 * The libwebrtc echo (echo-server.ts) as a process of its own, so a benchmark can measure its CPU
 * apart from the peer that drives it: prints `{"url": "..."}` once listening, exits on SIGTERM.
 *
 *   node --import tsx test/support/echo-main.ts [--size 512]
 */
import { parseArgs } from 'node:util';
import { startEchoServer } from './echo-server.ts';

const { values } = parseArgs({ options: { size: { type: 'string', default: '512' } } });
const echo = await startEchoServer({ size: Number(values.size) });
console.log(JSON.stringify({ url: echo.url }));
process.once('SIGTERM', () => {
  void echo.close().then(() => process.exit(0));
});
