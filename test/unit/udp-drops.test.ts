/**
 * The kernel's UDP receive drops, as the server reads them for `xpl_udp_receive_drops_total`
 * (server/rtc/udp-drops.ts): a burst into a socket with the smallest receive buffer overflows it
 * before the event loop can read, and every datagram sent is then either received or counted.
 */
import { strict as assert } from 'node:assert';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import { registry } from '../../server/metrics.ts';
import { UdpDropCounter, udpDropsBySocket } from '../../server/rtc/udp-drops.ts';
import { metricValue, waitUntil } from '../support/wait.ts';

const SENT = 300;

async function bound(recvBuffer?: number): Promise<Socket> {
  const s = createSocket({ type: 'udp4', recvBufferSize: recvBuffer });
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

test('a receive buffer that overflows: every datagram is received or counted as dropped, and only once', async () => {
  const before = udpDropsBySocket();
  assert.ok(before, '/proc/net/udp is readable on Linux');
  const counter = new UdpDropCounter();
  assert.equal(counter.gained(), 0, 'no drops yet on this process\'s sockets');
  const scraped0 = metricValue(await registry.metrics(), 'xpl_udp_receive_drops_total');

  const rx = await bound(1); // the kernel raises it to its minimum, a couple of datagrams
  const tx = await bound();
  let received = 0;
  rx.on('message', () => received++);
  const payload = Buffer.alloc(1000, 7);
  // One synchronous burst: the event loop cannot read the receiver until it is over.
  for (let i = 0; i < SENT; i++) tx.send(payload, rx.address().port, '127.0.0.1');

  let dropped = 0;
  await waitUntil(() => {
    const now = udpDropsBySocket()!;
    dropped = [...now].filter(([inode]) => !before.has(inode)).reduce((a, [, d]) => a + d, 0);
    return received + dropped === SENT;
  }, 10_000, `every datagram received or dropped (${SENT})`);
  assert.ok(dropped > 0, `the burst overflowed the buffer (received ${received})`);

  assert.equal(counter.gained(), dropped, 'the running total gained exactly the new drops');
  assert.equal(counter.gained(), 0, 'and nothing more on the next read');
  const scraped1 = metricValue(await registry.metrics(), 'xpl_udp_receive_drops_total');
  assert.equal(scraped1! - scraped0!, dropped, 'the metric counts them');

  rx.close();
  tx.close();
});
