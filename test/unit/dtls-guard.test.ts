/**
 * The DTLS guards of server/rtc/dtls-guard.ts on their own; test/integration/deno.test.ts meets the
 * retransmitted flight 4 for real (libwebrtc against a slow werift client).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropRepeatedFlight4, isForgedClose, type HandshakeSocket } from '../../server/rtc/dtls-guard.ts';

function socketRecording(): { socket: HandshakeSocket; seen: number[][] } {
  const seen: number[][] = [];
  const socket: HandshakeSocket = { onHandleHandshakes: async (assembled) => void seen.push(assembled.map((h) => h.msg_type)) };
  return { socket, seen };
}
const deliver = async (socket: HandshakeSocket, batches: number[][]) => {
  for (const b of batches) await socket.onHandleHandshakes(b.map((msg_type) => ({ msg_type })));
};

test('flight 4 copies after its ServerHelloDone never reach werift; the Finished and everything before do', async () => {
  const { socket, seen } = socketRecording();
  dropRepeatedFlight4(socket);
  await deliver(socket, [[2], [11], [12], [13], [14], [2], [11], [12, 13], [14], [20]]);
  assert.deepEqual(seen, [[2], [11], [12], [13], [14], [20]]);
});

test('a first flight 4 that lost its end is completed by the retransmission', async () => {
  const { socket, seen } = socketRecording();
  dropRepeatedFlight4(socket);
  await deliver(socket, [[2], [11], [2], [11], [12], [13], [14], [20]]);
  assert.deepEqual(seen, [[2], [11], [2], [11], [12], [13], [14], [20]]);
});

test('a batch mixing a flight 4 copy with the Finished keeps the Finished', async () => {
  const { socket, seen } = socketRecording();
  dropRepeatedFlight4(socket);
  await deliver(socket, [[2, 11, 12, 13, 14], [14, 20]]);
  assert.deepEqual(seen, [[2, 11, 12, 13, 14], [20]]);
});

test('forged closing records: plaintext alerts and unknown types are caught, epoch-1 application data is not', () => {
  const record = (type: number, epoch: number, body = 2) => Uint8Array.from([type, 0xfe, 0xfd, epoch >> 8, epoch & 255, 0, 0, 0, 0, 0, 1, body >> 8, body & 255, ...new Array(body).fill(0)]);
  assert.equal(isForgedClose(record(21, 0)), true);
  assert.equal(isForgedClose(record(99, 1)), true);
  assert.equal(isForgedClose(record(23, 1)), false);
  assert.equal(isForgedClose(record(21, 1)), false);
  assert.equal(isForgedClose(Uint8Array.from([...record(23, 1), ...record(21, 0)])), true);
});
