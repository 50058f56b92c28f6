/**
 * The dialing side of a node link's handshake (the node with the lower id dials): connect (TCP or
 * TLS, the certificate checked against the node dialled), `hello`, check the acceptor's `welcome`
 * and proof, `auth` with our proof and session state, then `ready` establishes the link, unless
 * the session changed meanwhile. See docs/link-protocol.md ("Handshake and authentication").
 */
import net from 'node:net';
import tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import { handshakeParams, LINK_PROTOCOL_VERSION, MAC_BYTES, newNonce, NONCE_BYTES, ROLE_ACCEPTOR, ROLE_DIALER, type HandshakeParams } from './auth.js';
import { deriveFrameKeys } from './frame-mac.js';
import { parseLinkFrame, type SessionToken, type WelcomeFrame } from './frame-schema.js';
import { HANDSHAKE_FRAMES, isTlsAuthError, type HandshakeContext } from './handshake-context.js';
import { LinkConn } from './link-conn.js';
import { resumes } from './link-session.js';
import { encodeLinkFrame } from './link-wire.js';
import type { PeerLink } from './peer-link.js';
import { SocketReads } from './socket-reads.js';
import { checkPeerNode } from './tls-identity.js';

/** Dials `peer` at host:port and runs the handshake; the connection is `peer.pending` meanwhile. */
export function dialPeer(ctx: HandshakeContext, peer: PeerLink, host: string, port: number): void {
  const tlsOpts = ctx.tls;
  // A plain TCP socket we dial can read through onread (one reused buffer, no stream event per
  // read); TLS sockets and the sockets we accept cannot.
  let reads: SocketReads | undefined;
  let socket: net.Socket;
  if (tlsOpts === undefined) {
    reads = new SocketReads();
    socket = net.connect({ host, port, onread: reads.onread });
  } else {
    socket = tls.connect({ host, port, key: tlsOpts.key, cert: tlsOpts.cert, ca: tlsOpts.ca as string | Buffer | Array<string | Buffer>, rejectUnauthorized: true, checkServerIdentity: () => undefined });
  }
  const conn = new LinkConn(socket, ctx.maxFrameBytes, reads, ctx.frameKey === undefined ? undefined : HANDSHAKE_FRAMES, ctx.totals);
  peer.pending = conn;
  const timer = ctx.clock.setTimer(ctx.timing.handshakeMs, () => conn.end('timeout'));
  const nonce = newNonce();
  let stage: 'connect' | 'welcome' | 'ready' | 'done' = 'connect';
  let welcome: WelcomeFrame | undefined;
  let params: HandshakeParams | undefined;
  let snapshot: { epoch: number; view: SessionToken | null; ack: number } | undefined;

  socket.once('connect', () => ctx.dialAnswered(peer));
  socket.once(tlsOpts === undefined ? 'connect' : 'secureConnect', () => {
    if (!conn.open) return;
    if (tlsOpts !== undefined) {
      try {
        checkPeerNode(socket as tls.TLSSocket, peer.node);
      } catch (err) {
        conn.end('auth', err);
        return;
      }
    }
    stage = 'welcome';
    conn.write(encodeLinkFrame({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: ctx.kernelVersion, from: ctx.nodeId, to: peer.node, inc: ctx.incarnation, nonce }, ctx.framing));
  });

  conn.onValue = (v) => {
    const f = parseLinkFrame(v, NONCE_BYTES, MAC_BYTES);
    if (stage === 'welcome' && f.t === 'welcome') {
      if (f.from !== peer.node || f.to !== ctx.nodeId) refuse(`peer at ${host}:${port} is node ${f.from} (expected ${peer.node}) talking to ${f.to}`);
      if (f.kv !== ctx.kernelVersion) throw new DvsError('EDVSPROTONOSUPPORT', `node ${f.from} speaks kernel protocol ${f.kv} (this node ${ctx.kernelVersion})`);
      const p = handshakeParams({ nonce, node: ctx.nodeId, inc: ctx.incarnation, kv: ctx.kernelVersion }, { nonce: f.nonce, node: f.from, inc: f.inc, kv: f.kv });
      ctx.proofs.check(ROLE_ACCEPTOR, p, f.mac);
      welcome = f;
      params = p;
      snapshot = { epoch: peer.epoch, view: peer.view(), ack: peer.lastSeqReceived };
      stage = 'ready';
      conn.write(encodeLinkFrame({ t: 'auth', mac: ctx.proofs.make(ROLE_DIALER, p), ...snapshot }, ctx.framing));
      return;
    }
    if (stage === 'ready' && f.t === 'ready' && welcome !== undefined && params !== undefined && snapshot !== undefined) {
      ctx.clock.clearTimer(timer);
      stage = 'done';
      if (peer.pending === conn) peer.pending = undefined;
      if (ctx.isClosed() || ctx.peerOf(peer.node) !== peer || peer.epoch !== snapshot.epoch || peer.lastSeqReceived !== snapshot.ack || peer.view() !== snapshot.view) {
        // The session changed while we were shaking hands: start over.
        conn.end('replaced');
        ctx.redial(peer, true);
        return;
      }
      const peerToken = { inc: welcome.inc, epoch: f.epoch };
      const resume = resumes({ inc: ctx.incarnation, epoch: snapshot.epoch }, snapshot.view, peerToken, f.view);
      if (ctx.frameKey !== undefined) conn.seal(deriveFrameKeys(ctx.frameKey, ROLE_DIALER, params));
      ctx.adopt(peer, conn, peerToken, resume, f.ack);
      return;
    }
    throw new DvsError('EDVSBADREQUEST', `unexpected ${f.t} while waiting for ${stage}`);
  };

  conn.onEnd = (why, err) => {
    ctx.clock.clearTimer(timer);
    if (peer.pending === conn) peer.pending = undefined;
    if (stage === 'connect' && why === 'closed' && !isTlsAuthError(err)) {
      ctx.log.debug({ node: ctx.nodeId, peer: peer.node, err: err instanceof Error ? err.message : undefined }, 'connect failed');
      if ((err as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED') ctx.dialRefused(peer);
    } else {
      ctx.handshakeFailed(why, err, peer, 'outbound');
    }
    ctx.redial(peer, false);
  };
}

function refuse(msg: string): never {
  throw new DvsError('EDVSCONNREFUSED', msg);
}
