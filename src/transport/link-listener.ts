/**
 * The listening side of a node's links: the TCP (or TLS) server, and the admission of inbound
 * connections into their handshake, at most `maxPending` at a time.
 * See docs/link-protocol.md ("Handshake and authentication").
 */
import net from 'node:net';
import tls from 'node:tls';
import { DvsError } from '../ipc/errors.js';
import { acceptHandshake } from './acceptor-handshake.js';
import { HANDSHAKE_FRAMES, HANDSHAKE_MAX_FRAME_BYTES, type HandshakeContext } from './handshake-context.js';
import { LinkConn } from './link-conn.js';
import type { LinkTlsOptions } from './link-options.js';
import type { ManagerCounters } from './link-stats.js';

export class LinkListener {
  private server: net.Server | undefined;
  /** Inbound connections in their handshake. */
  private readonly inbound = new Set<LinkConn>();
  private readonly settled = (conn: LinkConn): void => {
    this.inbound.delete(conn);
  };

  constructor(
    private readonly ctx: HandshakeContext,
    private readonly counters: ManagerCounters,
    private readonly maxPending: number,
  ) {}

  /** Inbound connections currently in their handshake. */
  get pending(): number {
    return this.inbound.size;
  }

  /** Listens on host:port; resolves with the bound address. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const tlsOpts = this.ctx.tls;
    const server = tlsOpts === undefined ? net.createServer((s) => this.onInbound(s)) : this.createTlsServer(tlsOpts);
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

  /** Ends every connection in its handshake and stops listening. */
  async close(): Promise<void> {
    for (const conn of this.inbound) conn.end('shutdown');
    this.inbound.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined && server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private createTlsServer(o: LinkTlsOptions): tls.Server {
    const server = tls.createServer(
      { key: o.key, cert: o.cert, ca: o.ca as string | Buffer | Array<string | Buffer>, requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.ctx.timing.handshakeMs },
      (s) => this.onInbound(s),
    );
    server.on('tlsClientError', (err) => {
      this.counters.accepted++;
      this.ctx.handshakeFailed('auth', err, undefined, 'inbound TLS');
    });
    return server;
  }

  private onInbound(socket: net.Socket): void {
    if (this.ctx.isClosed()) {
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    if (this.inbound.size >= this.maxPending) {
      this.counters.refused++;
      this.counters.handshakeFailures++;
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const conn = new LinkConn(socket, HANDSHAKE_MAX_FRAME_BYTES, undefined, this.ctx.frameKey === undefined ? undefined : HANDSHAKE_FRAMES);
    this.inbound.add(conn);
    acceptHandshake(this.ctx, conn, this.settled);
  }
}
