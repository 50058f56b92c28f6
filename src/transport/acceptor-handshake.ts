/**
 * The accepting side of a node link's handshake (the node with the higher id accepts): check the
 * dialer's `hello` (version, direction, a listed peer, in TLS mode its certificate), answer
 * `welcome` with our proof, check the dialer's `auth`, decide resume or reset, answer `ready` and
 * establish the link. See docs/link-protocol.md ("Handshake and authentication").
 */
import type tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import { handshakeParams, LINK_PROTOCOL_VERSION, MAC_BYTES, newNonce, NONCE_BYTES, ROLE_ACCEPTOR, ROLE_DIALER } from './auth.js';
import { parseLinkFrame, type HelloFrame } from './frame-schema.js';
import type { HandshakeContext } from './handshake-context.js';
import type { LinkConn } from './link-conn.js';
import { resumes } from './link-session.js';
import { encodeLinkFrame } from './link-wire.js';
import type { PeerLink } from './peer-link.js';
import { checkPeerNode } from './tls-identity.js';

/**
 * Runs the acceptor's handshake on an inbound connection. `settled` is called once the connection
 * is no longer in its handshake (established, or ended).
 */
export function acceptHandshake(ctx: HandshakeContext, conn: LinkConn, settled: (conn: LinkConn) => void): void {
  const timer = ctx.clock.setTimer(ctx.timing.handshakeMs, () => conn.end('timeout'));
  const nonce = newNonce();
  let stage: 'hello' | 'auth' | 'done' = 'hello';
  let hello: HelloFrame | undefined;
  let peerOf: PeerLink | undefined;

  conn.onValue = (v) => {
    const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
    if (stage === 'hello' && f.t === 'hello') {
      if (f.v !== LINK_PROTOCOL_VERSION) refuse(`link protocol ${f.v} not supported`);
      if (f.to !== ctx.nodeId) refuse(`hello for node ${f.to}`);
      if (f.from >= ctx.nodeId) refuse(`node ${f.from} must accept, not dial, node ${ctx.nodeId}`);
      const peer = ctx.peerOf(f.from);
      if (peer === undefined) refuse(`node ${f.from} is not a peer`);
      if (ctx.tls !== undefined) checkPeerNode(conn.socket as tls.TLSSocket, f.from);
      hello = f;
      peerOf = peer;
      stage = 'auth';
      const p = handshakeParams(f.nonce, nonce, f.from, ctx.nodeId, f.inc, ctx.incarnation);
      conn.write(encodeLinkFrame({ t: 'welcome', v: LINK_PROTOCOL_VERSION, from: ctx.nodeId, to: f.from, inc: ctx.incarnation, nonce, mac: ctx.proofs.make(ROLE_ACCEPTOR, p) }, ctx.framing));
      return;
    }
    if (stage === 'auth' && f.t === 'auth' && hello !== undefined) {
      const p = handshakeParams(hello.nonce, nonce, hello.from, ctx.nodeId, hello.inc, ctx.incarnation);
      ctx.proofs.check(ROLE_DIALER, p, f.mac);
      // The dialer must wait for `ready`: nothing may follow `auth` in what we hold.
      if (!conn.setMaxFrameBytes(ctx.maxFrameBytes)) throw new DvsError('EDVSBADREQUEST', 'data before ready');
      const peer = ctx.peerOf(hello.from);
      if (peer === undefined || peer !== peerOf) refuse(`node ${hello.from} is no longer a peer`);
      ctx.clock.clearTimer(timer);
      stage = 'done';
      settled(conn);
      const peerToken = { inc: hello.inc, epoch: f.epoch };
      const myToken = { inc: ctx.incarnation, epoch: peer.epoch };
      const myView = peer.view();
      const resume = resumes(myToken, myView, peerToken, f.view);
      conn.write(encodeLinkFrame({ t: 'ready', epoch: peer.epoch, view: myView, ack: resume ? peer.lastSeqReceived : 0 }, ctx.framing));
      ctx.adopt(peer, conn, peerToken, resume, f.ack);
      return;
    }
    throw new DvsError('EDVSBADREQUEST', `unexpected ${f.t} while waiting for ${stage}`);
  };

  conn.onEnd = (why, err) => {
    ctx.clock.clearTimer(timer);
    settled(conn);
    if (stage !== 'done') ctx.handshakeFailed(why, err, undefined, 'inbound');
  };
}

function refuse(msg: string): never {
  throw new DvsError('EDVSCONNREFUSED', msg);
}
