/**
 * Correct sender-report clocks for werift 0.25's RTP senders.
 *
 * werift's ntpTime() writes the decimal digits of the fractional second into the 32-bit NTP
 * fraction (…678.123 s becomes …678 + 123/2³² s), so every RTCP sender report says its RTP
 * timestamp left at a whole second. A receiver that keeps audio and video of one media stream in
 * sync reads exactly those reports (libwebrtc fits RTP↔NTP over them): with second-resolution
 * clocks its lip-sync drifts by tens to hundreds of milliseconds. This module stamps the true NTP
 * time of each packet's send into the sender right after werift stamped its own, so the next
 * sender report carries a correct mapping.
 */
import type { MediaStreamTrack, RTCRtpSender } from 'werift';

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** Now as a 64-bit NTP timestamp (32.32 fixed point). */
export function ntpNow(unixMs = performance.timeOrigin + performance.now()): bigint {
  const seconds = unixMs / 1000 + NTP_UNIX_OFFSET_S;
  const whole = Math.floor(seconds);
  const fraction = Math.floor((seconds - whole) * 2 ** 32);
  return (BigInt(whole) << 32n) | BigInt(fraction);
}

/**
 * After every packet `track` hands to `sender`, sets the sender's clock to the true time. Must be
 * called after `sender.replaceTrack(track)`: subscribers run in subscription order, and the
 * sender stamps its clock synchronously when the packet is delivered.
 */
export function correctSenderClock(sender: RTCRtpSender, track: MediaStreamTrack): void {
  const stamped = sender as unknown as { ntpTimestamp: bigint };
  track.onReceiveRtp.subscribe(() => {
    stamped.ntpTimestamp = ntpNow();
  });
}
