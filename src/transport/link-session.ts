/**
 * The session rule of node links: after a handshake, both sides decide the same way whether the
 * previous session goes on (resume: resend what the other has not seen) or starts afresh (reset).
 * See docs/link-protocol.md ("Sessions").
 */
import type { SessionToken } from './frame-schema.js';

/** Resume only when each side's view of the other equals the other's current token. */
export function resumes(myToken: SessionToken, myViewOfPeer: SessionToken | null, peerToken: SessionToken, peerViewOfMe: SessionToken | null): boolean {
  return sameToken(myViewOfPeer, peerToken) && sameToken(peerViewOfMe, myToken);
}

function sameToken(a: SessionToken | null, b: SessionToken | null): boolean {
  if (a === null || b === null) return false;
  return a.inc === b.inc && a.epoch === b.epoch;
}
