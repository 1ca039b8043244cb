/**
 * IncomingBitrateLimit: while the frame budget holds a session below its frame rate, the sender
 * is asked (REMB) for that share of the bitrate it sent unlimited, never below the floor, every
 * second; lifting sends a ceiling far above any stream a few times and then nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReceiverEstimatedMaxBitrate } from 'werift';
import { IncomingBitrateLimit, LIFTED_BPS, MIN_BPS, REMB_INTERVAL_MS, rembFields } from '../../server/rtc/bitrate-limit.ts';
import { waitUntil } from '../support/wait.ts';

/** A limit on a clock the test moves: `feed` sends `bps` worth of 1,000-byte packets over `ms`. */
function limited() {
  let now = 0;
  const sent: number[] = [];
  const limit = new IncomingBitrateLimit((bps) => sent.push(bps), () => now);
  const feed = (bps: number, ms: number) => {
    const packets = Math.round((bps / 8 / 1000) * (ms / 1000));
    for (let i = 0; i < packets; i++) {
      now += ms / packets;
      limit.observe(1000);
    }
  };
  return { limit, sent, feed };
}

test('capped to a third of its frame rate, a 3 Mbit/s sender is asked for 1 Mbit/s, not for a third of what it sends under the limit', () => {
  const l = limited();
  l.feed(3_000_000, 2100);
  assert.deepEqual(l.sent, [], 'nothing is asked while no cap applies');
  l.limit.setShare(10 / 30);
  assert.equal(l.sent.length, 1);
  assert.ok(Math.abs(l.sent[0] - 1_000_000) <= 10_000, `asked for ${l.sent[0]}`);
  // The sender follows: what it sends now is not the base of the next request.
  l.feed(1_000_000, 3000);
  assert.equal(l.limit.ceilingBps, l.sent[0]);
  l.limit.stop();
});

test('a deep cap never asks for less than the floor; the request repeats every second while it applies', async () => {
  const sent: number[] = [];
  let now = 0;
  const limit = new IncomingBitrateLimit((bps) => sent.push(bps), () => now);
  for (let i = 0; i < 40; i++) {
    now += 50;
    limit.observe(2000);
  }
  limit.setShare(5 / 60);
  assert.equal(sent[0], MIN_BPS, `asked for ${sent[0]}`);
  await waitUntil(() => sent.length >= 2, 3 * REMB_INTERVAL_MS, 'the request to be sent again');
  assert.equal(sent[1], MIN_BPS);
  limit.stop();
});

test('lifting the cap sends the lift three times, then nothing; a limit before any measurement waits for one', async () => {
  const l = limited();
  l.limit.setShare(0.5);
  assert.deepEqual(l.sent, [], 'no measurement yet: nothing to take a share of');
  l.feed(2_000_000, 1100);
  assert.equal(l.sent.length, 1, 'the limit applies as soon as the first window is measured');
  assert.ok(Math.abs(l.sent[0] - 1_000_000) <= 10_000, `asked for ${l.sent[0]}`);
  l.limit.setShare(1);
  assert.equal(l.sent.at(-1), LIFTED_BPS);
  await waitUntil(() => l.sent.filter((b) => b === LIFTED_BPS).length === 3, 5 * REMB_INTERVAL_MS, 'three lifts');
  assert.equal(l.limit.pending, false, 'nothing is left to send after the third lift');
  assert.equal(l.limit.ceilingBps, null);
  // Measured afresh: a sender now at 4 Mbit/s is the base of the next request.
  l.feed(4_000_000, 1100);
  l.limit.setShare(0.25);
  assert.ok(Math.abs(l.sent.at(-1)! - 1_000_000) <= 10_000, `asked for ${l.sent.at(-1)}`);
  l.limit.stop();
});

test('REMB fields: an 18-bit mantissa and an exponent that give back the bitrate within its precision', () => {
  for (const bps of [MIN_BPS, 400_000, 2_500_000, LIFTED_BPS]) {
    const { brExp, brMantissa } = rembFields(bps);
    assert.ok(brMantissa < 1 << 18 && brExp < 64);
    const back = brMantissa * 2 ** brExp;
    assert.ok(back <= bps && bps - back < 2 ** brExp, `${bps} → ${brMantissa}·2^${brExp} = ${back}`);
  }
  assert.deepEqual(rembFields(200_000), { brExp: 0, brMantissa: 200_000 });
  // As werift writes and reads the packet (the peer sends it through werift).
  const wire = new ReceiverEstimatedMaxBitrate({ senderSsrc: 1, mediaSsrc: 0, ...rembFields(400_000), ssrcNum: 1, ssrcFeedbacks: [1234] }).serialize();
  const back = ReceiverEstimatedMaxBitrate.deSerialize(wire);
  assert.equal(back.bitrate, 400_000n);
  assert.deepEqual(back.ssrcFeedbacks, [1234]);
});
