/**
 * Checks an SDP offer before it reaches the WebRTC stack, so that a malformed or hostile offer
 * gets a precise 400 instead of an exception (or a hang) deep inside werift.
 */
import { XplError } from '../errors.ts';

export const MAX_SDP_BYTES = 64 * 1024;
const MAX_LINE = 4096;
const MAX_MEDIA_SECTIONS = 8;

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export interface OfferSummary {
  /** Direction of the first video m-line as the offerer states it. */
  videoDirection: Direction;
  videoCodecs: string[];
  mediaSections: number;
}

export function inspectOffer(sdp: string): OfferSummary {
  if (Buffer.byteLength(sdp) > MAX_SDP_BYTES) {
    throw new XplError('too_large', `SDP offer is larger than ${MAX_SDP_BYTES} bytes`);
  }
  if (!/^v=0\r?\n/.test(sdp)) throw new XplError('bad_sdp', 'not an SDP offer: it must start with "v=0"');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  let media: { kind: string; direction: Direction; codecs: string[]; port: number } | null = null;
  const sections: { kind: string; direction: Direction; codecs: string[]; port: number }[] = [];
  let sessionDirection: Direction = 'sendrecv';
  for (const [i, line] of lines.entries()) {
    if (line.length > MAX_LINE) throw new XplError('bad_sdp', `SDP line ${i + 1} is longer than ${MAX_LINE} characters`);
    if (!/^[a-z]=/.test(line)) throw new XplError('bad_sdp', `SDP line ${i + 1} is not of the form "x=value"`);
    if (line.startsWith('m=')) {
      const m = /^m=(\w+) (\d+) [\w/]+ ?(.*)$/.exec(line);
      if (!m) throw new XplError('bad_sdp', `SDP line ${i + 1}: malformed m-line`);
      media = { kind: m[1], direction: sessionDirection, codecs: [], port: Number(m[2]) };
      sections.push(media);
      if (sections.length > MAX_MEDIA_SECTIONS) throw new XplError('bad_sdp', `SDP has more than ${MAX_MEDIA_SECTIONS} media sections`);
      continue;
    }
    const dir = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (dir) {
      if (media) media.direction = dir[1] as Direction;
      else sessionDirection = dir[1] as Direction;
      continue;
    }
    const rtpmap = /^a=rtpmap:\d+ ([\w-]+)\//.exec(line);
    if (rtpmap && media) media.codecs.push(rtpmap[1].toUpperCase());
  }
  const video = sections.find((s) => s.kind === 'video' && s.port !== 0);
  if (!video) throw new XplError('no_video', 'the offer has no video m-line: send one video track (the driving webcam)');
  if (video.direction === 'recvonly' || video.direction === 'inactive') {
    throw new XplError('no_video', `the offer's video is "${video.direction}": the driving webcam must be sent (sendrecv, or sendonly for ingest only; use /v1/sessions/ID/whep to watch)`);
  }
  if (!video.codecs.includes('VP8')) {
    throw new XplError('unsupported_codec', `the offer's video codecs (${video.codecs.join(', ') || 'none'}) do not include VP8, the codec this server decodes`);
  }
  return { videoDirection: video.direction, videoCodecs: video.codecs, mediaSections: sections.length };
}
