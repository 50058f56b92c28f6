/**
 * ProcServer: the daemon side of the process protocol (docs/protocol.md). Listens on a Unix socket
 * (mode 0600), authenticates each connection with the daemon's token and serves its requests
 * against the node's kernel. A client OS process is a remote control for the endpoints it binds:
 * their rendezvous state lives in this kernel, and the bytes of their grants stay in the client,
 * fetched on demand.
 */
import { lstat, chmod, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Kernel } from '../kernel/kernel.js';
import { encodeFrame } from '../transport/framing.js';
import { ProcConnection } from './proc-conn.js';
import type { RunHost } from './proc-runs.js';
import type { RunEndpoint } from '../transport/run-spec.js';
import type { Op } from './proc-ops.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import { newProcServerStats, type BindHook, type ConnContext, type ProcServerStats } from './proc-context.js';
import { DEFAULT_HELLO_TIMEOUT_MS, DEFAULT_PROC_MAX_FRAME_BYTES, FRAME_OVERHEAD_BYTES, toWireError } from '../transport/proc-protocol.js';
import { checkToken, readTokenFile } from '../transport/proc-token.js';

export type { BindHook, BindHookOptions, BoundForClient, ProcServerStats } from './proc-context.js';

export interface ProcServerOptions {
  readonly kernel: Kernel;
  /** Path of the Unix socket, e.g. `<dataDir>/dvsd.sock`. */
  readonly socketPath: string;
  /** The shared secret, or `tokenPath`: a file holding it, readable by its owner only (0600). */
  readonly token?: string;
  readonly tokenPath?: string;
  readonly logger?: Logger;
  /** Largest frame body accepted or sent (default 4 MiB; at least the kernel's payload and copy chunk sizes + 4 KiB). */
  readonly maxFrameBytes?: number;
  /** DC used by requests that name none. */
  readonly defaultDcid?: number;
  /** How long a new connection has to authenticate (default 5 s). */
  readonly helloTimeoutMs?: number;
  /** How long the daemon waits for a client to serve one grant-read/grant-write (default 30 s). */
  readonly grantTimeoutMs?: number;
  /** Requests in flight per connection (default 4096); more are refused with EDVSAGAIN, except cancel, ping, unbind and info. */
  readonly maxInFlight?: number;
  /** Endpoints bound per connection (default 256). */
  readonly maxEndpoints?: number;
  /** Grants held per connection (default 4096). */
  readonly maxGrants?: number;
  /** Connections at once (default 1024). */
  readonly maxConnections?: number;
  /** Unsent bytes a connection may accumulate before the daemon drops it (default 64 MiB). */
  readonly maxWriteBufferBytes?: number;
  /** Frames toward clients that announced LZ4 are compressed from this size (default 16 KiB). */
  readonly compressMinBytes?: number;
  /** Announced in hello: how long past its timeout a call may still settle (the links' failure detection; default 0). */
  readonly settleMs?: number;
  /**
   * Binds an endpoint for a client instead of `kernel.bind` (e.g. claiming it in the cluster
   * directory first). It must bind in `kernel` and return the Process; it may be asynchronous.
   * It gets the request's `slot`, `endpoint` (checked to be a process endpoint of the DC, in
   * `slot` when both are given) and `name` unchanged: an `endpoint` is that exact slot and
   * generation, refused with EDVSENDPOINT when that generation cannot be had. It gets the call's
   * `timeoutMs` and an abort `signal`, aborted when the call times out, is cancelled or its
   * connection closes; it should then give up. A Process it returns after that is unbound at once.
   */
  readonly bind?: BindHook;
  /** Requests the daemon adds to the protocol's own (docs/protocol.md, "Services and migration"). */
  readonly ops?: ReadonlyMap<string, Op>;
  /**
   * The daemon's own state for operators (its registration, its links, store and socket counters),
   * answered as field `node` of the `info` request. It must return a plain msgpack-encodable map.
   */
  readonly info?: () => Record<string, unknown>;
  /** Serves the `run`, `runs` and `stop` requests (the daemon's supervisor). */
  readonly runs?: RunHost;
}

function positive(name: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!Number.isSafeInteger(n) || n < 1) throw new DvsError('EDVSBADVALUE', `${name} must be a positive integer, got ${String(v)}`);
  return n;
}

export class ProcServer {
  readonly socketPath: string;
  readonly stats: ProcServerStats = newProcServerStats();
  private readonly opts: ProcServerOptions;
  private readonly kernel: Kernel;
  private readonly logger: Logger;
  private readonly maxFrameBytes: number;
  private readonly maxConnections: number;
  private readonly connections = new Set<ProcConnection>();
  private server: Server | undefined;
  private ctx: ConnContext | undefined;
  private nextConn = 1;
  private state: 'new' | 'starting' | 'listening' | 'closed' = 'new';

  constructor(opts: ProcServerOptions) {
    if (opts.token === undefined && opts.tokenPath === undefined) throw new DvsError('EDVSBADVALUE', 'ProcServer needs a token or a tokenPath');
    if (opts.token !== undefined) checkToken(opts.token);
    if (typeof opts.socketPath !== 'string' || opts.socketPath.length === 0) throw new DvsError('EDVSBADVALUE', 'ProcServer needs a socketPath');
    this.opts = opts;
    this.kernel = opts.kernel;
    this.socketPath = opts.socketPath;
    this.logger = opts.logger ?? silentLogger;
    const lim = opts.kernel.limits;
    const floor = Math.max(lim.maxPayloadBytes, lim.maxCopyChunk) + FRAME_OVERHEAD_BYTES;
    this.maxFrameBytes = positive('maxFrameBytes', opts.maxFrameBytes, Math.max(DEFAULT_PROC_MAX_FRAME_BYTES, floor));
    if (this.maxFrameBytes < floor) throw new DvsError('EDVSBADVALUE', `maxFrameBytes must be at least ${floor} (the kernel's payload or copy chunk limit + ${FRAME_OVERHEAD_BYTES})`);
    this.maxConnections = positive('maxConnections', opts.maxConnections, 1024);
    if (opts.defaultDcid !== undefined && (!Number.isInteger(opts.defaultDcid) || opts.defaultDcid < 0 || opts.defaultDcid > 0xffff)) {
      throw new DvsError('EDVSBADDCID', `defaultDcid must be an integer in 0..65535, got ${String(opts.defaultDcid)}`);
    }
  }

  /** Connections currently open (authenticated or not). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Endpoints bound by the open connections that said in hello they belong to run `run`. */
  endpointsOfRun(run: number): RunEndpoint[] {
    const out: RunEndpoint[] = [];
    for (const c of this.connections) if (c.run === run && !c.released) out.push(...c.endpoints);
    return out;
  }

  /** The open connection that bound `endpoint` of `dcid` and still holds it (for a move: its snapshot, its `moved` event). */
  connectionOf(dcid: number, endpoint: Endpoint): ProcConnection | undefined {
    for (const conn of this.connections) if (conn.holds(dcid, endpoint)) return conn;
    return undefined;
  }

  /** Removes a stale socket file, listens, and restricts the socket to its owner. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new DvsError('EDVSALREADY', 'ProcServer.start may be called once');
    this.state = 'starting';
    const token = this.opts.token ?? (await readTokenFile(this.opts.tokenPath!, true));
    const o = this.opts;
    this.ctx = {
      kernel: this.kernel,
      token,
      logger: this.logger,
      defaultDcid: o.defaultDcid,
      maxFrameBytes: this.maxFrameBytes,
      maxCopyBytes: this.maxFrameBytes - FRAME_OVERHEAD_BYTES,
      helloTimeoutMs: positive('helloTimeoutMs', o.helloTimeoutMs, DEFAULT_HELLO_TIMEOUT_MS),
      grantTimeoutMs: positive('grantTimeoutMs', o.grantTimeoutMs, 30_000),
      maxInFlight: positive('maxInFlight', o.maxInFlight, 4096),
      maxEndpoints: positive('maxEndpoints', o.maxEndpoints, 256),
      maxGrants: positive('maxGrants', o.maxGrants, 4096),
      maxWriteBufferBytes: positive('maxWriteBufferBytes', o.maxWriteBufferBytes, 64 * 1024 * 1024),
      compressMinBytes: positive('compressMinBytes', o.compressMinBytes, 16 * 1024),
      settleMs: o.settleMs ?? 0,
      stats: this.stats,
      bind: o.bind,
      ops: o.ops,
      info: o.info,
      runs: o.runs,
      closed: (conn) => {
        this.connections.delete(conn);
        this.stats.open = this.connections.size;
      },
    };
    await this.removeStaleSocket();
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: false }, (socket) => this.onConnection(socket));
    server.on('error', (err) => this.logger.error({ err: err.message }, 'process socket server error'));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new DvsError('EDVSADDRINUSE', `cannot listen on ${this.socketPath}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(this.socketPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.server = server;
    if ((this.state as string) === 'closed') {
      // close() ran while we were starting.
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unlink(this.socketPath).catch(() => undefined);
      throw new DvsError('EDVSSHUTDOWN', 'ProcServer closed while starting');
    }
    try {
      await chmod(this.socketPath, 0o600);
    } catch (err) {
      await this.close();
      throw new DvsError('EDVSACCES', `cannot restrict ${this.socketPath} to its owner: ${(err as Error).message}`, { cause: err });
    }
    if ((this.state as string) === 'starting') this.state = 'listening';
    this.logger.info({ socket: this.socketPath }, 'process socket listening');
  }

  /** Stops listening, closes every connection (unbinding their endpoints) and removes the socket file. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const server = this.server;
    this.server = undefined;
    for (const conn of [...this.connections]) conn.shutdown(new DvsError('EDVSSHUTDOWN', 'the daemon is shutting down'));
    if (server !== undefined) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unlink(this.socketPath).catch(() => undefined);
    }
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => undefined);
    if (this.state !== 'listening' || this.connections.size >= this.maxConnections || this.ctx === undefined) {
      this.stats.refused++;
      try {
        const bye = encodeFrame({ op: 'bye', error: toWireError(new DvsError('EDVSAGAIN', 'too many connections to the daemon')) });
        this.stats.bytesOut += bye.byteLength;
        socket.end(bye);
      } catch {
        socket.destroy();
      }
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.stats.accepted++;
    const conn = new ProcConnection(this.nextConn++, socket, this.ctx);
    this.connections.add(conn);
    if (socket.destroyed) this.connections.delete(conn);
    this.stats.open = this.connections.size;
  }

  /**
   * A socket file left by a daemon that died is removed; a live one (something accepts
   * connections) is an error, and so is a path that is not a socket.
   */
  private async removeStaleSocket(): Promise<void> {
    let isSocket: boolean;
    try {
      isSocket = (await lstat(this.socketPath)).isSocket();
    } catch {
      return; // nothing there
    }
    if (!isSocket) throw new DvsError('EDVSEXIST', `${this.socketPath} exists and is not a socket`);
    const live = await new Promise<boolean>((resolve) => {
      const probe = createConnection(this.socketPath);
      const timer = setTimeout(() => {
        probe.destroy();
        resolve(true);
      }, 1000);
      probe.once('connect', () => {
        clearTimeout(timer);
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (live) throw new DvsError('EDVSADDRINUSE', `another daemon is listening on ${this.socketPath}`);
    await unlink(this.socketPath);
    this.logger.info({ socket: this.socketPath }, 'removed a stale process socket');
  }
}
