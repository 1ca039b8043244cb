import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { sampleProcessTree } from '../../server/process-tree.ts';
import { waitUntil } from '../support/wait.ts';

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
    const walked = sampleProcessTree(root, 'children');
    const scanned = sampleProcessTree(root, 'scan');
    // bash, the busy loop's subshell, sleep, the subshell and its sleep
    assert.equal(walked.processes, 5);
    assert.equal(scanned.processes, 5);
    assert.ok(walked.rssMiB > 1, `rss ${walked.rssMiB}`);
    // Both read the same clock; the busy loop runs on between the two reads.
    assert.ok(Math.abs(walked.cpuS - scanned.cpuS) < 0.5, `${walked.cpuS} vs ${scanned.cpuS}`);
  });
});

test("a process tree's CPU includes its children's: a busy child's seconds are counted", async () => {
  await withTree(async (root) => {
    const first = sampleProcessTree(root).cpuS;
    let grew = 0;
    await waitUntil(() => (grew = sampleProcessTree(root).cpuS - first) >= 0.3, 20_000, `the tree's CPU to grow by 0.3 s (it grew ${grew} s)`);
    assert.ok(grew >= 0.3);
  });
});

test('a process that does not exist samples as empty', () => {
  const s = sampleProcessTree(2 ** 22 + 7);
  assert.deepEqual(s, { cpuS: 0, rssMiB: 0, processes: 0 });
});
