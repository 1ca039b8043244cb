/**
 * README's diffusion renderer examples, run exactly as written: a tiny pack exported, a server on
 * each engine, and the full-size CUDA command refused clearly where there is no CUDA. Apart from
 * test/commands.test.ts because it times nothing: npm test runs it beside other files.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DIFFUSION_COMMANDS, healthy, killLeftovers, run, start, stoppedCleanly } from './support/commands.ts';
import { REPO_ROOT, freePort } from './support/server.ts';
import { waitUntil } from './support/wait.ts';

after(killLeftovers);

/** Python's own answer to "is there a CUDA device?", from the interpreter the torch engine uses. */
function hasCuda(): boolean {
  const py = process.env.XPL_PYTHON ?? '/usr/bin/python3';
  const r = spawnSync(py, ['-c', 'import torch; print(torch.cuda.is_available())'], { encoding: 'utf8' });
  return r.stdout.trim() === 'True';
}

test('README: the diffusion renderer examples export a tiny pack, serve both engines, and refuse CUDA clearly where there is none', { timeout: 600_000 }, async () => {
  const [exportTiny, onnx, torchTiny, torchRandom] = DIFFUSION_COMMANDS;
  const exported = await run(exportTiny, {}, 480_000);
  assert.equal(exported.code, 0, exported.out.slice(-1500));
  assert.ok(existsSync(join(REPO_ROOT, 'packs/tiny/manifest.json')), 'packs/tiny/manifest.json written');
  // Both servers start side by side (each start is mostly waiting on its worker's set-up).
  const servers = await Promise.all([onnx, torchTiny].map(async (command) => ({ command, port: await freePort() })));
  const running = servers.map((s) => ({ ...s, r: start(s.command, { PORT: String(s.port) }) }));
  for (const { command, port, r } of running) {
    await waitUntil(() => healthy(`http://127.0.0.1:${port}`), 120_000, `${command}: healthy`).catch((err) => {
      throw new Error(`${err.message}\n${r.out().slice(-1500)}`);
    });
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    assert.equal(health.defaultRenderer, 'xportrait-lcm', JSON.stringify(health));
    if (command === torchTiny) {
      // The torch engine's worker process is up before the server listens.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /^xpl_lcm_torch_workers(\{[^}]*\})? 1$/m);
    }
  }
  for (const { command, r } of running) {
    await stoppedCleanly(r, command);
    // Ctrl+C reaches the torch worker too (one process group); the server stops it, in order.
    assert.doesNotMatch(r.out(), /Traceback|KeyboardInterrupt/, `${command}: a Python traceback on Ctrl+C:\n${r.out().slice(-1500)}`);
  }
  // Full size on CUDA: where this machine has no CUDA device, the server must stop at once, naming it.
  if (!hasCuda()) {
    const refused = await run(torchRandom, {}, 120_000);
    assert.equal(refused.code, 2, refused.out.slice(-1500));
    assert.match(refused.out, /CUDA/);
    assert.match(refused.out, /--device cpu/);
  }
});
