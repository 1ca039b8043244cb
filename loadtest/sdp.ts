/**
 * Keeps a load-test session's media on loopback: drops every ICE candidate that is not a UDP
 * candidate on 127.0.0.0/8, in the offer we post and in the answer we apply. The server must offer
 * a loopback candidate (`--ice-address 127.0.0.1`); when it does not, the error says so instead
 * of letting ICE fall back to another interface.
 */
const LOOPBACK_CANDIDATE = /^a=candidate:\S+ \d+ udp \d+ 127\.\d+\.\d+\.\d+ \d+ typ host/i;

export function loopbackOnly(sdp: string, who: 'offer' | 'answer'): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  let kept = 0;
  const lines = sdp.split(/\r?\n/).filter((l) => {
    if (!l.startsWith('a=candidate:')) return true;
    const keep = LOOPBACK_CANDIDATE.test(l);
    if (keep) kept++;
    return keep;
  });
  if (kept === 0) {
    throw new Error(
      who === 'answer'
        ? 'the server offered no 127.x UDP candidate: start it with --ice-address 127.0.0.1, or pass --any-ice to use its other candidates'
        : 'this machine gathered no 127.x UDP candidate for the offer; pass --any-ice',
    );
  }
  return lines.join(eol);
}
