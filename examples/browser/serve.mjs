// Serves this folder's page on its own origin (http://127.0.0.1:8081 by default): a WHIP
// publisher, a WHEP player and a stats readout that talk to an xportrait-live server on another
// origin, through the SDK the server serves. Start the server with that origin allowed:
//
//   npm start -- --cors-origin http://127.0.0.1:8081
//   node examples/browser/serve.mjs
//
// PORT changes this page's port, XPL_URL the server it points at (default http://127.0.0.1:8080).
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const port = Number(process.env.PORT ?? 8081);
const server = process.env.XPL_URL ?? 'http://127.0.0.1:8080';
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const file = path === '/' ? 'index.html' : path.slice(1);
  if (!/^[a-z]+\.(html|js)$/.test(file)) {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = await readFile(join(root, file));
    res.writeHead(200, { 'Content-Type': types[extname(file)] }).end(body);
  } catch {
    res.writeHead(404).end();
  }
}).listen(port, '127.0.0.1', () => {
  console.log(`open http://127.0.0.1:${port}/?server=${encodeURIComponent(server)}`);
  console.log(`(the server must allow this origin: --cors-origin http://127.0.0.1:${port})`);
});
process.once('SIGINT', () => process.exit(0));
