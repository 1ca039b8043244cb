/**
 * The audio relay on a fake clock: audio waits for the video's latency to be known, then leaves
 * that long after it arrived, in order, follows a changed latency within the slew limit, and
 * stops when disabled. Also: the sender-report clock is a true NTP time.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { RtpHeader, RtpPacket } from 'werift';
import { AudioRelay } from '../../server/rtc/audio-relay.ts';
import { ntpNow } from '../../server/rtc/sender-clock.ts';

let clock = 0;
beforeEach(() => {
  clock = 0;
  mock.timers.enable({ apis: ['setTimeout'] });
});
afterEach(() => mock.timers.reset());

/** Moves the fake clock and the mocked timers together, 1 ms at a time (timers see the time they fire at). */
const advance = (ms: number) => {
  for (let i = 0; i < ms; i++) {
    clock += 1;
    mock.timers.tick(1);
  }
};
const packet = (seq: number) => new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: seq, timestamp: seq * 960, ssrc: 1234, extensions: [{ id: 1, payload: Buffer.from([0x7f]) }] }), Buffer.from([seq & 0xff]));

function setup(latency: () => number) {
  const relay = new AudioRelay({ videoDelayMs: latency, now: () => clock });
  const out = relay.addOutput();
  const sent: Array<{ at: number; seq: number; extensions: number }> = [];
  out.track.onReceiveRtp.subscribe((rtp) => sent.push({ at: clock, seq: rtp.header.sequenceNumber, extensions: rtp.header.extensions.length }));
  return { relay, out, sent };
}

test('no audio leaves before the video latency is known; then each packet leaves that long after it came', () => {
  let latency = Number.NaN;
  const { relay, sent } = setup(() => latency);
  relay.push(packet(1));
  advance(20);
  relay.push(packet(2));
  advance(500);
  assert.equal(sent.length, 0, 'audio waits for the video');
  assert.equal(relay.info().dropped, 2);

  latency = 120;
  for (let seq = 3; seq < 10; seq++) {
    relay.push(packet(seq));
    advance(20);
  }
  advance(200);
  assert.deepEqual(sent.map((p) => p.seq), [3, 4, 5, 6, 7, 8, 9], 'in order, none lost');
  // Packet 3 arrived at t=520 → left at 640; each later one 20 ms after the previous.
  assert.deepEqual(sent.map((p) => p.at), [640, 660, 680, 700, 720, 740, 760]);
  assert.ok(sent.every((p) => p.extensions === 0), "the caller's header extensions are not forwarded");
  assert.equal(relay.info().delayMs, 120);
});

test('a changed latency is followed within the slew limit (5 %); small changes are ignored, large ones jumped', () => {
  let latency = 100;
  const { relay, sent } = setup(() => latency);
  const delays: number[] = [];
  const arrivals: number[] = [];
  for (let seq = 0; seq < 300; seq++) {
    if (seq === 50) latency = 105; // under the 10 ms deadband: no change
    if (seq === 100) latency = 200;
    arrivals[seq] = clock;
    relay.push(packet(seq));
    delays.push(relay.info().delayMs);
    advance(20);
  }
  advance(400);
  assert.equal(delays[99], 100, 'a 5 ms change is left alone');
  for (let i = 1; i < delays.length; i++) assert.ok(Math.abs(delays[i] - delays[i - 1]) <= 1.0001, `step ${i}: ${delays[i - 1]} → ${delays[i]}`);
  assert.ok(Math.abs(delays.at(-1)! - 200) < 10, `reaches the new latency (${delays.at(-1)})`);
  // Leaving order and spacing: never reordered, never bunched below 19 ms (the 1 ms nudge).
  for (let i = 1; i < sent.length; i++) {
    assert.equal(sent[i].seq, sent[i - 1].seq + 1);
    assert.ok(sent[i].at - sent[i - 1].at >= 19, `spacing ${sent[i].at - sent[i - 1].at} ms`);
  }
  assert.equal(sent.length, 300);
  assert.equal(sent[0].at - arrivals[0], 100);

  latency = 600; // a stall or a slow renderer: taken at once
  advance(300);
  relay.push(packet(300));
  assert.equal(relay.info().delayMs, 600);
});

test('disabled: nothing is relayed until enabled again; outputs removed and a closed relay send nothing', () => {
  const { relay, out, sent } = setup(() => 50);
  relay.enabled = false;
  relay.push(packet(1));
  advance(100);
  assert.equal(sent.length, 0);
  relay.enabled = true;
  relay.push(packet(2));
  advance(100);
  assert.deepEqual(sent.map((p) => p.seq), [2]);
  out.remove();
  relay.push(packet(3));
  advance(100);
  assert.equal(sent.length, 1);
  relay.close();
  relay.push(packet(4));
  advance(100);
  assert.equal(relay.info().packetsOut, 1);
});

test('ntpNow is a 32.32 NTP timestamp with a real fraction', () => {
  const unixMs = Date.UTC(2026, 0, 1, 12, 0, 0, 250);
  const ntp = ntpNow(unixMs);
  assert.equal(Number(ntp >> 32n), unixMs / 1000 - 0.25 + 2_208_988_800);
  assert.equal(Number(ntp & 0xffffffffn), 2 ** 30, 'a quarter second is 2^30 of 2^32');
});
