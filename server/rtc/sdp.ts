/**
 * Checks an SDP offer before it reaches the WebRTC stack, so that a malformed or hostile offer
 * gets a precise 400 instead of an exception (or a hang) deep inside werift.
 */
import { XplError } from '../errors.ts';
import type { VideoCodec } from '../media/codec.ts';

export const MAX_SDP_BYTES = 64 * 1024;
const MAX_LINE = 4096;
const MAX_MEDIA_SECTIONS = 8;

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export interface OfferSummary {
  /** Direction of the first video m-line as the offerer states it. */
  videoDirection: Direction;
  videoCodecs: string[];
  /** The codec the driving video will arrive in: VP8 when offered, else H.264 (packetization mode 1). */
  videoCodec: VideoCodec;
  /** Direction of the first audio m-line (Opus), when the offer has one. */
  audioDirection?: Direction;
  mediaSections: number;
}

interface Section {
  kind: string;
  direction: Direction;
  codecs: string[];
  port: number;
  /** Payload types of H.264 in packetization mode 1 (the only mode the server takes). */
  h264Mode1: string[];
}

/** Payload types per codec name and their fmtp, of one m-section's lines. */
function rtpMaps(lines: string[]): { names: Map<string, string>; fmtp: Map<string, string> } {
  const names = new Map<string, string>();
  const fmtp = new Map<string, string>();
  for (const l of lines) {
    const r = /^a=rtpmap:(\d+) ([\w-]+)\//.exec(l);
    if (r) names.set(r[1], r[2].toUpperCase());
    const f = /^a=fmtp:(\d+) (.*)$/.exec(l);
    if (f) fmtp.set(f[1], f[2]);
  }
  return { names, fmtp };
}

const isMode1 = (fmtp: string | undefined) => /(^|;)\s*packetization-mode=1\b/.test(fmtp ?? '');

/** Digest sizes (bytes) of the hash functions RFC 8122 allows for DTLS certificate fingerprints. */
const FINGERPRINT_BYTES: Record<string, number> = { 'sha-1': 20, 'sha-224': 28, 'sha-256': 32, 'sha-384': 48, 'sha-512': 64 };

/**
 * Every DTLS fingerprint must be a real one: without it the DTLS handshake can only fail, and
 * the offer would hold a session slot until the ICE timeout.
 */
function checkFingerprints(sdp: string): void {
  const found = [...sdp.matchAll(/^a=fingerprint:(\S+) (\S+)\r?$/gm)];
  const lines = sdp.match(/^a=fingerprint:.*$/gm) ?? [];
  if (lines.length === 0) throw new XplError('bad_sdp', 'the offer has no a=fingerprint line: DTLS-SRTP needs the certificate fingerprint');
  if (found.length !== lines.length) throw new XplError('bad_sdp', 'malformed a=fingerprint line: expected "a=fingerprint:HASH HEX:HEX:…"');
  for (const [, hash, hex] of found) {
    const bytes = FINGERPRINT_BYTES[hash.toLowerCase()];
    if (!bytes) throw new XplError('bad_sdp', `a=fingerprint uses an unknown hash "${hash}" (expected one of ${Object.keys(FINGERPRINT_BYTES).join(', ')})`);
    if (!new RegExp(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){${bytes - 1}}$`).test(hex)) {
      throw new XplError('bad_sdp', `a=fingerprint ${hash} must be ${bytes} hex bytes separated by colons`);
    }
  }
}

export function inspectOffer(sdp: string): OfferSummary {
  if (Buffer.byteLength(sdp) > MAX_SDP_BYTES) {
    throw new XplError('too_large', `SDP offer is larger than ${MAX_SDP_BYTES} bytes`);
  }
  if (!/^v=0\r?\n/.test(sdp)) throw new XplError('bad_sdp', 'not an SDP offer: it must start with "v=0"');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  let media: Section | null = null;
  const sections: Section[] = [];
  const sectionLines: string[][] = [];
  let sessionDirection: Direction = 'sendrecv';
  for (const [i, line] of lines.entries()) {
    if (line.length > MAX_LINE) throw new XplError('bad_sdp', `SDP line ${i + 1} is longer than ${MAX_LINE} characters`);
    if (!/^[a-z]=/.test(line)) throw new XplError('bad_sdp', `SDP line ${i + 1} is not of the form "x=value"`);
    if (line.startsWith('m=')) {
      const m = /^m=(\w+) (\d+) [\w/]+ ?(.*)$/.exec(line);
      if (!m) throw new XplError('bad_sdp', `SDP line ${i + 1}: malformed m-line`);
      media = { kind: m[1], direction: sessionDirection, codecs: [], port: Number(m[2]), h264Mode1: [] };
      sections.push(media);
      sectionLines.push([]);
      if (sections.length > MAX_MEDIA_SECTIONS) throw new XplError('bad_sdp', `SDP has more than ${MAX_MEDIA_SECTIONS} media sections`);
      continue;
    }
    sectionLines.at(-1)?.push(line);
    const dir = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (dir) {
      if (media) media.direction = dir[1] as Direction;
      else sessionDirection = dir[1] as Direction;
      continue;
    }
    const rtpmap = /^a=rtpmap:\d+ ([\w-]+)\//.exec(line);
    if (rtpmap && media) media.codecs.push(rtpmap[1].toUpperCase());
  }
  for (const [i, sec] of sections.entries()) {
    const { names, fmtp } = rtpMaps(sectionLines[i]);
    sec.h264Mode1 = [...names].filter(([pt, name]) => name === 'H264' && isMode1(fmtp.get(pt))).map(([pt]) => pt);
  }
  const video = sections.find((s) => s.kind === 'video' && s.port !== 0);
  if (!video) throw new XplError('no_video', 'the offer has no video m-line: send one video track (the driving webcam)');
  if (video.direction === 'recvonly' || video.direction === 'inactive') {
    throw new XplError('no_video', `the offer's video is "${video.direction}": the driving webcam must be sent (sendrecv, or sendonly for ingest only; use /v1/sessions/ID/whep to watch)`);
  }
  const videoCodec: VideoCodec | null = video.codecs.includes('VP8') ? 'vp8' : video.h264Mode1.length ? 'h264' : null;
  if (!videoCodec) {
    const h264 = video.codecs.includes('H264') ? ' (H.264 only in packetization mode 0, which the server does not take)' : '';
    throw new XplError('unsupported_codec', `the offer's video codecs (${video.codecs.join(', ') || 'none'}) include neither VP8 nor H.264 in packetization mode 1, the codecs this server decodes${h264}`);
  }
  const audio = sections.find((s) => s.kind === 'audio' && s.port !== 0);
  if (audio) checkOpus(audio.codecs);
  checkFingerprints(sdp);
  return { videoDirection: video.direction, videoCodecs: video.codecs, videoCodec, audioDirection: audio?.direction, mediaSections: sections.length };
}

/**
 * The offer with its video sections' H.264 payload types in packetization mode 0 (and their RTX)
 * removed, so that the WebRTC stack, which pairs codecs by name, can only agree on a mode the
 * assembler reads. An answer may use any subset of the offered formats, so this changes nothing
 * else the offerer sees.
 */
export function withoutUnusableFormats(sdp: string): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const parts = sdp.split(/\r?\n(?=m=)/);
  return parts
    .map((part) => {
      if (!part.startsWith('m=video')) return part;
      const lines = part.split(/\r?\n/);
      const { names, fmtp } = rtpMaps(lines);
      const drop = new Set([...names].filter(([pt, name]) => name === 'H264' && !isMode1(fmtp.get(pt))).map(([pt]) => pt));
      for (const [pt, name] of names) if (name === 'RTX' && drop.has(/apt=(\d+)/.exec(fmtp.get(pt) ?? '')?.[1] ?? '')) drop.add(pt);
      if (drop.size === 0) return part;
      return lines
        .map((l, i) => (i === 0 ? l.split(' ').filter((f, k) => k < 3 || !drop.has(f)).join(' ') : l))
        .filter((l) => !drop.has(/^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ ]/.exec(l)?.[1] ?? ''))
        .join(eol);
    })
    .join(eol);
}

/**
 * Audio is relayed as it comes (never decoded), so it must be Opus — the codec every WebRTC
 * endpoint has. An audio m-line the server rejected would break a max-bundle offer's answer in
 * libwebrtc, so an offer without Opus is refused outright, with the reason.
 */
function checkOpus(codecs: string[]): void {
  if (!codecs.includes('OPUS')) {
    throw new XplError('unsupported_codec', `the offer's audio codecs (${codecs.join(', ') || 'none'}) do not include Opus, the audio codec this server relays: offer Opus or no audio`);
  }
}

/** Keeps the a=candidate lines for which `keep(address, type)` holds; every other line unchanged. */
export function keepCandidates(sdp: string, keep: (address: string, type: string) => boolean): string {
  return sdp
    .split('\r\n')
    .filter((line) => {
      const m = /^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)/.exec(line);
      return !m || keep(m[1], m[2]);
    })
    .join('\r\n');
}

/**
 * Checks a WHEP viewer offer: an SDP with a video m-line the viewer receives (recvonly, or
 * sendrecv of which only our half is used) and, among its codecs, the one the session encodes; an
 * audio m-line, if any, with Opus (the session's audio goes to it).
 */
export function inspectViewerOffer(sdp: string, codec: VideoCodec = 'vp8'): void {
  if (Buffer.byteLength(sdp) > MAX_SDP_BYTES) throw new XplError('too_large', `SDP offer is larger than ${MAX_SDP_BYTES} bytes`);
  if (!/^v=0\r?\n/.test(sdp)) throw new XplError('bad_sdp', 'not an SDP offer: it must start with "v=0"');
  const sections = sdp.split(/\r?\nm=/).slice(1);
  const video = sections.find((m) => m.startsWith('video ') && !/^video 0 /.test(m));
  if (!video) throw new XplError('no_video', 'the viewer offer has no video m-line: add a recvonly video transceiver');
  const dir = /\r?\na=(sendrecv|sendonly|recvonly|inactive)\r?$/m.exec(video)?.[1] ?? 'sendrecv';
  if (dir === 'sendonly' || dir === 'inactive') {
    throw new XplError('no_video', `the viewer offer's video is "${dir}": a WHEP viewer receives, so offer recvonly`);
  }
  const ok = codec === 'vp8' ? /a=rtpmap:\d+ VP8\//i.test(video) : [...video.matchAll(/a=rtpmap:(\d+) H264\//gi)].some(([, pt]) => isMode1(new RegExp(`a=fmtp:${pt} (.*)`).exec(video)?.[1]));
  if (!ok) throw new XplError('unsupported_codec', `the viewer offer does not include ${codec === 'vp8' ? 'VP8' : 'H.264 (packetization mode 1)'}, the codec this session sends`);
  const audio = sections.find((m) => m.startsWith('audio ') && !/^audio 0 /.test(m));
  if (audio) checkOpus([...audio.matchAll(/a=rtpmap:\d+ ([\w-]+)\//g)].map((m) => m[1].toUpperCase()));
  checkFingerprints(sdp);
}
