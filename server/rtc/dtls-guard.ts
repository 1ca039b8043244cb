/**
 * Guards werift's DTLS socket against unauthenticated records that end the media.
 *
 * werift 0.25 closes a DTLS transport on *any* record of type alert, including a plaintext
 * (epoch 0) alert nobody authenticated, and on a record of an unknown content type: one forged
 * 15-byte datagram from the peer's address stopped a session's media for good
 * (test/faults/bad-input.test.ts). After the handshake a legitimate peer only sends epoch ≥ 1
 * records of the four known types, so such datagrams are dropped before werift parses them.
 */
import type { RTCDtlsTransport, RTCPeerConnection } from 'werift';

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

/** Installs the guard on every DTLS transport of a connected peer connection (idempotent). */
export function guardDtls(pc: RTCPeerConnection): void {
  for (const t of pc.dtlsTransports as Array<RTCDtlsTransport & { dtls?: SocketWithTransport; xplGuarded?: boolean }>) {
    const socket = t.dtls?.transport?.socket;
    const inner = socket?.onData;
    if (!socket || !inner || t.xplGuarded) continue;
    t.xplGuarded = true;
    socket.onData = (data: Buffer) => {
      if (!isForgedClose(data)) inner(data);
    };
  }
}
