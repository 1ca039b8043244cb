/**
 * Guards for two faults of werift 0.25's DTLS that end a session's media.
 *
 * Forged closing records: werift 0.25 closes a DTLS transport on *any* record of type alert,
 * including a plaintext (epoch 0) alert nobody authenticated, and on a record of an unknown content
 * type: one forged 15-byte datagram from the peer's address stopped a session's media for good
 * (test/faults/bad-input.test.ts). After the handshake a legitimate peer only sends epoch ≥ 1
 * records of the four known types, so such datagrams are dropped before werift parses them.
 *
 * A retransmitted server flight 4 (ServerHello … ServerHelloDone): libwebrtc resends it when our
 * flight 5 is slow to come (its first DTLS timeout is 50 ms: a cold or busy server), and werift's
 * client treats the copy as a new handshake — a fresh ECDHE key pair, then, if the server's
 * Finished arrives meanwhile, a second flight 5 whose master secret the peer never saw. The
 * handshake reads as connected on both sides, but every SRTP key differs: no packet authenticates
 * and the session gets no media at all (seen under Deno as "the first session after start gets
 * nothing back", one time in three). Copies of flight 4 that arrive after its ServerHelloDone are
 * dropped: werift's own flight-5 retransmission timer covers a lost flight 5.
 */
import type { RTCDtlsTransport, RTCPeerConnection } from 'werift';

/** Handshake message types of the server's flight 4: ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone. */
const FLIGHT_4 = new Set([2, 11, 12, 13, 14]);
const SERVER_HELLO_DONE = 14;

const CHANGE_CIPHER_SPEC = 20;
const ALERT = 21;
const APPLICATION_DATA = 23;
const RECORD_HEADER = 13;

/** True when a datagram holds a record an attacker could have forged to close the connection. */
export function isForgedClose(data: Uint8Array): boolean {
  let at = 0;
  while (at + RECORD_HEADER <= data.length) {
    const type = data[at];
    const epoch = (data[at + 3] << 8) | data[at + 4];
    if (type < CHANGE_CIPHER_SPEC || type > APPLICATION_DATA) return true;
    if (type === ALERT && epoch === 0) return true;
    at += RECORD_HEADER + ((data[at + 11] << 8) | data[at + 12]);
  }
  return false;
}

interface SocketWithTransport {
  transport?: { socket?: { onData?: (data: Buffer) => void } };
}

export interface HandshakeSocket {
  onHandleHandshakes: (assembled: Array<{ msg_type: number }>) => Promise<void>;
}

/**
 * Installs both guards on every DTLS transport the connection gets; call it right after creating
 * the connection, before any transport starts: the flight-4 guard when a transport starts its
 * handshake as the client, the forged-record guard once the handshake is done.
 */
export function guardDtls(pc: RTCPeerConnection): void {
  const watched = new WeakSet<RTCDtlsTransport>();
  pc.onTransceiverAdded.subscribe((transceiver) => {
    const transport = transceiver.dtlsTransport;
    if (!transport || watched.has(transport)) return;
    watched.add(transport);
    transport.onStateChange.subscribe((state) => {
      // werift creates the socket synchronously right after announcing "connecting", and sends its
      // first flight 100 ms later: a microtask is in time and sees the socket.
      if (state === 'connecting' && transport.role === 'client') queueMicrotask(() => dropRepeatedFlight4(transport.dtls as unknown as HandshakeSocket | undefined));
      else if (state === 'connected') dropForgedCloses(transport.dtls as unknown as SocketWithTransport | undefined);
    });
  });
}

function dropForgedCloses(dtls: SocketWithTransport | undefined): void {
  const socket = dtls?.transport?.socket;
  const inner = socket?.onData;
  if (!socket || !inner) return;
  socket.onData = (data: Buffer) => {
    if (!isForgedClose(data)) inner(data);
  };
}

export function dropRepeatedFlight4(socket: HandshakeSocket | undefined): void {
  if (!socket) return;
  const handle = socket.onHandleHandshakes;
  let flight4Seen = false;
  socket.onHandleHandshakes = (assembled) => {
    const fresh = flight4Seen ? assembled.filter((h) => !FLIGHT_4.has(h.msg_type)) : assembled;
    if (fresh.some((h) => h.msg_type === SERVER_HELLO_DONE)) flight4Seen = true;
    return fresh.length ? handle(fresh) : Promise.resolve();
  };
}
