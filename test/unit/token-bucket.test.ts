import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from '../../server/control/limits.ts';

test('a token bucket is full again only once the client kept within its rate for burst/rate seconds', () => {
  const b = new TokenBucket(5, 10, 0);
  assert.equal(b.full(0), true);
  for (let i = 0; i < 10; i++) assert.equal(b.take(0), true);
  assert.equal(b.take(0), false, 'the burst is spent');
  // A flood read slowly: a token refills every 200 ms and lets one message through, but the flood is not over.
  assert.equal(b.take(200), true);
  assert.equal(b.full(200), false);
  assert.equal(b.take(250), false);
  assert.equal(b.full(1900), false);
  assert.equal(b.full(2300), true, '2 s at no more than the rate refills the 10 tokens');
});
