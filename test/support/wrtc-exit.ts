/**
 * Works around a crash of @roamhq/wrtc 0.10 at process exit: when node tears down its
 * environment after the event loop has drained, the addon's N-API cleanup (finalizers of
 * RTCVideoSource / RTCPeerConnection wrappers) segfaults now and then, even when every peer was
 * closed and every track stopped (same family as node-webrtc issues #636/#651 and
 * WonderInventions/node-webrtc#35). `process.exit()` ends the process without that teardown,
 * so once node has decided to exit (the 'exit' event, after the test runner has written its
 * report and set process.exitCode) we finish the exit ourselves with the same code.
 *
 * Importing this module installs the hook once per process. It changes nothing about when a
 * process exits: a leaked timer or open peer still keeps node alive.
 */
let installed = false;

export function guardWrtcExit(): void {
  if (installed) return;
  installed = true;
  process.once('exit', (code) => {
    // Inside an 'exit' listener, process.exit() skips straight to the final exit.
    process.exit(process.exitCode ?? code);
  });
}

guardWrtcExit();
