/**
 * A minimal, valid WHIP offer (one sendrecv VP8 video m-line, BUNDLE, rtcp-mux) with fresh ICE
 * credentials, DTLS fingerprint and SSRC each time, generated without a WebRTC stack: enough for
 * the server to create a session and answer it. No candidates (the server answers without any
 * connectivity from us), so nothing is ever sent anywhere.
 */
import { randomBytes, randomInt } from 'node:crypto';

const ICE_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function iceString(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ICE_CHARS[randomInt(ICE_CHARS.length)];
  return s;
}

export function minimalOffer(opts: { codec?: string; direction?: 'sendrecv' | 'sendonly' | 'recvonly'; fingerprint?: string } = {}): string {
  const fingerprint = opts.fingerprint ?? `sha-256 ${[...randomBytes(32)].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':')}`;
  return [
    'v=0',
    `o=- ${randomInt(1, 2 ** 47)} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=msid-semantic: WMS',
    'm=video 9 UDP/TLS/RTP/SAVPF 96',
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    `a=ice-ufrag:${iceString(8)}`,
    `a=ice-pwd:${iceString(24)}`,
    'a=ice-options:trickle',
    `a=fingerprint:${fingerprint}`,
    'a=setup:actpass',
    'a=mid:0',
    `a=${opts.direction ?? 'sendrecv'}`,
    'a=rtcp-mux',
    'a=rtcp-rsize',
    `a=rtpmap:96 ${opts.codec ?? 'VP8'}/90000`,
    'a=rtcp-fb:96 nack',
    'a=rtcp-fb:96 nack pli',
    'a=rtcp-fb:96 ccm fir',
    `a=ssrc:${randomInt(1, 2 ** 32 - 1)} cname:${iceString(16)}`,
    '',
  ].join('\r\n');
}
