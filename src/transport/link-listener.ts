/**
 * The listening side of a node's links: the TCP server (TLS is layered on each accepted socket, so
 * that a connection is in the pre-authentication pool from its first moment, TLS handshake
 * included), the admission of inbound connections under the pool's policy (preauth-pool.ts), and
 * what their handshakes' ends count. A connection that closes before sending a single byte is a
 * probe (another node checking that we are alive, see docs/link-protocol.md "Crash detection"):
 * tolerated, and counted as such, not as a failure.
 */
import net from 'node:net';
import tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import { acceptHandshake, type InboundAdmission } from './acceptor-handshake.js';
import { HANDSHAKE_FRAMES, HANDSHAKE_MAX_FRAME_BYTES, type HandshakeContext } from './handshake-context.js';
import { LinkConn, type ConnEnd } from './link-conn.js';
import type { LinkTlsOptions } from './link-options.js';
import type { ManagerCounters } from './link-stats.js';
import { PreAuthPool, type PreAuthSlot } from './preauth-pool.js';

/** The socket a TLS socket of the server wraps (Node keeps it as `_parent`). */
function wrappedSocket(s: tls.TLSSocket): net.Socket | undefined {
  return (s as unknown as { _parent?: net.Socket })._parent;
}

export class LinkListener {
  private server: net.Server | undefined;
  private tlsServer: tls.Server | undefined;
  private readonly pool: PreAuthPool;
  /** Pool slots by accepted socket, for the TLS server's callbacks. */
  private readonly slots = new WeakMap<net.Socket, PreAuthSlot>();

  constructor(
    private readonly ctx: HandshakeContext,
    private readonly counters: ManagerCounters,
    maxPending: number,
    isPeerAddress: (address: string) => boolean,
  ) {
    this.pool = new PreAuthPool({ maxSilent: maxPending, helloMs: Math.min(ctx.timing.helloMs, ctx.timing.handshakeMs), clock: ctx.clock, isPeerAddress });
  }

  /** Inbound connections currently before authentication. */
  get pending(): number {
    return this.pool.size;
  }

  /** Listens on host:port; resolves with the bound address. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const tlsOpts = this.ctx.tls;
    if (tlsOpts !== undefined) this.tlsServer = this.createTlsServer(tlsOpts);
    const server = net.createServer((s) => this.onConnection(s));
    this.server = server;
    server.on('error', (err) => this.ctx.log.error({ node: this.ctx.nodeId, err }, 'link server error'));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new DvsError(err.code === 'EADDRINUSE' ? 'EDVSADDRINUSE' : 'EDVSADDRNOTAVAIL', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    return { host: addr.address, port: addr.port };
  }

  /** Ends every connection before authentication and stops listening. */
  async close(): Promise<void> {
    this.pool.closeAll();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined && server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private createTlsServer(o: LinkTlsOptions): tls.Server {
    const server = tls.createServer(
      { key: o.key, cert: o.cert, ca: o.ca as string | Buffer | Array<string | Buffer>, requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.ctx.timing.handshakeMs },
      (s) => this.onSecure(s),
    );
    // The socket's close counts the failure (see onConnection); the error says why.
    server.on('tlsClientError', (err, s) => {
      const raw = wrappedSocket(s);
      const slot = raw === undefined ? undefined : this.slots.get(raw);
      if (slot !== undefined) slot.tlsError = err;
    });
    return server;
  }

  private onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.ctx.isClosed()) {
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    const slot = this.pool.admit(socket);
    if (slot === undefined) {
      socket.destroy();
      this.ctx.handshakeFailed('refused', new DvsError('EDVSCONNREFUSED', 'too many connections before authentication from this address'), undefined, 'inbound');
      return;
    }
    const tlsServer = this.tlsServer;
    if (tlsServer === undefined) {
      this.startHandshake(slot, socket);
      return;
    }
    // Until the TLS handshake is through there is no link connection: the pool ends the socket.
    slot.end = (why) => {
      socket.destroy();
      this.ctx.handshakeFailed(why, undefined, undefined, 'inbound TLS');
    };
    // Closed before its TLS handshake was through: refused by TLS (its certificate, most likely).
    socket.once('close', () => {
      if (slot.settled || slot.handshaking) return;
      this.pool.settle(slot);
      if (socket.bytesRead === 0) this.counters.probes++;
      else this.ctx.handshakeFailed('auth', slot.tlsError, undefined, 'inbound TLS');
    });
    this.slots.set(socket, slot);
    tlsServer.emit('connection', socket);
  }

  private onSecure(s: tls.TLSSocket): void {
    const raw = wrappedSocket(s);
    const slot = raw === undefined ? undefined : this.slots.get(raw);
    if (slot === undefined || slot.settled || this.ctx.isClosed()) {
      s.destroy();
      return;
    }
    this.startHandshake(slot, s);
  }

  private startHandshake(slot: PreAuthSlot, socket: net.Socket): void {
    const conn = new LinkConn(socket, HANDSHAKE_MAX_FRAME_BYTES, undefined, this.ctx.frameKey === undefined ? undefined : HANDSHAKE_FRAMES, this.ctx.totals);
    slot.handshaking = true;
    slot.end = (why) => conn.end(why);
    const admission: InboundAdmission = {
      named: (node) => {
        const peer = this.ctx.peerOf(node);
        if (peer === undefined) return;
        slot.named = node;
        peer.counters.accepted++;
      },
      claimed: (node) => this.pool.claim(slot, node),
      settled: () => this.pool.settle(slot),
      failed: (why, err) => this.failed(slot, why, err),
    };
    acceptHandshake(this.ctx, conn, admission);
  }

  /** A handshake ended without a link: a probe, or a failure of whatever kind. */
  private failed(slot: PreAuthSlot, why: ConnEnd, err: unknown): void {
    this.pool.settle(slot);
    if (why === 'closed' && slot.claimed === undefined && slot.socket.bytesRead === 0) {
      this.counters.probes++;
      return;
    }
    this.ctx.handshakeFailed(why, err, slot.named === undefined ? undefined : this.ctx.peerOf(slot.named), 'inbound');
  }
}
