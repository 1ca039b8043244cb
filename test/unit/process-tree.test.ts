import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { sampleProcessTree } from '../../server/process-tree.ts';

/**
 * A tree of known shape: bash → (busy child, sleeping child, subshell → sleeping grandchild). The
 * tree is ready once its last process has printed a line.
 */
async function withTree(fn: (root: number) => Promise<void>): Promise<void> {
  const script = `
    ( while :; do :; done ) &
    sleep 60 &
    ( sleep 60 & echo ready; wait ) &
    wait`;
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  try {
    await once(child.stdout, 'data');
    await fn(child.pid!);
  } finally {
    process.kill(-child.pid!, 'SIGKILL');
    await once(child, 'exit');
  }
}

test('a process tree: the children walk and the /proc scan count the same processes and CPU', async () => {
  await withTree(async (root) => {
    const walked = await sampleProcessTree(root, 'children');
    const scanned = await sampleProcessTree(root, 'scan');
    // bash, the busy loop's subshell, sleep, the subshell and its sleep
    assert.equal(walked.processes, 5);
    assert.equal(scanned.processes, 5);
    assert.ok(walked.rssMiB > 1, `rss ${walked.rssMiB}`);
    // Both read the same clock; the busy loop runs on between the two reads.
    assert.ok(Math.abs(walked.cpuS - scanned.cpuS) < 0.5, `${walked.cpuS} vs ${scanned.cpuS}`);
  });
});

test("a process tree's CPU includes its children's: a busy grandchild's seconds are counted", async () => {
  await withTree(async (root) => {
    const first = await sampleProcessTree(root);
    // Wait for the busy loop to use 0.3 s of CPU, as the tree's total sees it.
    let now = first.cpuS;
    const deadline = Date.now() + 20_000;
    while (now - first.cpuS < 0.3 && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
      now = (await sampleProcessTree(root)).cpuS;
    }
    assert.ok(now - first.cpuS >= 0.3, `tree CPU grew ${now - first.cpuS} s`);
  });
});

test('a process that does not exist samples as empty', async () => {
  const s = await sampleProcessTree(2 ** 22 + 7);
  assert.deepEqual(s, { cpuS: 0, rssMiB: 0, processes: 0 });
});
