/**
 * The accepting side of a node link's handshake (the node with the higher id accepts): check the
 * dialer's `hello` (version, direction, a listed peer, in TLS mode its certificate), answer
 * `welcome` with our proof, check the dialer's `auth`, decide resume or reset, answer `ready` and
 * establish the link. See docs/link-protocol.md ("Handshake and authentication").
 */
import type tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import { handshakeParams, LINK_PROTOCOL_VERSION, MAC_BYTES, newNonce, NONCE_BYTES, ROLE_ACCEPTOR, ROLE_DIALER, type HandshakeParams } from './auth.js';
import { deriveFrameKeys } from './frame-mac.js';
import { parseLinkFrame } from './frame-schema.js';
import type { HandshakeContext } from './handshake-context.js';
import type { ConnEnd, LinkConn } from './link-conn.js';
import { resumes } from './link-session.js';
import { encodeLinkFrame } from './link-wire.js';
import type { PeerLink } from './peer-link.js';
import { checkPeerNode } from './tls-identity.js';

/** What the pre-authentication pool learns from an inbound handshake (link-listener.ts). */
export interface InboundAdmission {
  /** A hello names `node` as its sender (not yet checked): what the connection is counted under. */
  named(node: number): void;
  /** A well-formed hello named `node`, a peer that may dial us. */
  claimed(node: number): void;
  /** The connection is established: it leaves the pool. */
  settled(): void;
  /** The connection ended before it was established. */
  failed(why: ConnEnd, err: unknown): void;
}

/** Runs the acceptor's handshake on an inbound connection. */
export function acceptHandshake(ctx: HandshakeContext, conn: LinkConn, admission: InboundAdmission): void {
  const timer = ctx.clock.setTimer(ctx.timing.handshakeMs, () => conn.end('timeout'));
  const nonce = newNonce();
  let stage: 'hello' | 'auth' | 'done' = 'hello';
  let hello: { readonly from: number; readonly inc: number; readonly params: HandshakeParams } | undefined;
  let peerOf: PeerLink | undefined;

  conn.onValue = (v) => {
    const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
    if (stage === 'hello' && f.t === 'hello') {
      admission.named(f.from);
      if (f.to !== ctx.nodeId) refuse(`hello for node ${f.to}`);
      if (f.from >= ctx.nodeId) refuse(`node ${f.from} must accept, not dial, node ${ctx.nodeId}`);
      const peer = ctx.peerOf(f.from);
      if (peer === undefined) refuse(`node ${f.from} is not a peer`);
      if (f.kv !== ctx.kernelVersion) throw new DvsError('EDVSPROTONOSUPPORT', `node ${f.from} speaks kernel protocol ${f.kv} (this node ${ctx.kernelVersion})`);
      if (ctx.tls !== undefined) checkPeerNode(conn.socket as tls.TLSSocket, f.from);
      admission.claimed(f.from);
      const p = handshakeParams({ nonce: f.nonce, node: f.from, inc: f.inc, kv: f.kv }, { nonce, node: ctx.nodeId, inc: ctx.incarnation, kv: ctx.kernelVersion });
      hello = { from: f.from, inc: f.inc, params: p };
      peerOf = peer;
      stage = 'auth';
      conn.write(encodeLinkFrame({ t: 'welcome', v: LINK_PROTOCOL_VERSION, kv: ctx.kernelVersion, from: ctx.nodeId, to: f.from, inc: ctx.incarnation, nonce, mac: ctx.proofs.make(ROLE_ACCEPTOR, p) }, ctx.framing));
      return;
    }
    if (stage === 'auth' && f.t === 'auth' && hello !== undefined) {
      ctx.proofs.check(ROLE_DIALER, hello.params, f.mac);
      // The dialer must wait for `ready`: nothing may follow `auth` in what we hold.
      if (!conn.setMaxFrameBytes(ctx.maxFrameBytes)) throw new DvsError('EDVSBADREQUEST', 'data before ready');
      const peer = ctx.peerOf(hello.from);
      if (peer === undefined || peer !== peerOf) refuse(`node ${hello.from} is no longer a peer`);
      ctx.clock.clearTimer(timer);
      stage = 'done';
      admission.settled();
      const peerToken = { inc: hello.inc, epoch: f.epoch };
      const myToken = { inc: ctx.incarnation, epoch: peer.epoch };
      const myView = peer.view();
      const resume = resumes(myToken, myView, peerToken, f.view);
      conn.write(encodeLinkFrame({ t: 'ready', epoch: peer.epoch, view: myView, ack: resume ? peer.lastSeqReceived : 0 }, ctx.framing));
      if (ctx.frameKey !== undefined) conn.seal(deriveFrameKeys(ctx.frameKey, ROLE_ACCEPTOR, hello.params));
      ctx.adopt(peer, conn, peerToken, resume, f.ack);
      return;
    }
    throw new DvsError('EDVSBADREQUEST', `unexpected ${f.t} while waiting for ${stage}`);
  };

  conn.onEnd = (why, err) => {
    ctx.clock.clearTimer(timer);
    if (stage !== 'done') admission.failed(why, err);
  };
}

function refuse(msg: string): never {
  throw new DvsError('EDVSCONNREFUSED', msg);
}
