/**
 * NWEB as a VOS server (docs/vos/nweb.md): the web server on a TCP port of its node, its files from
 * the DC's FS through its own endpoint. The same code runs as a coroutine of a unikernel host or as
 * its own process. It holds a port of its node, so it does not move; it stops when its host stops it.
 */
import { DvsError } from '../../ipc/errors.js';
import type { M3Ipc } from '../../ipc/calls.js';
import { DEFAULT_DC_LIMITS, type DcLimits } from '../../ipc/limits.js';
import type { Payload } from '../../ipc/payload.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { SlotPeer } from '../slot-peer.js';
import { FsWebFiles } from './fs-web-files.js';
import { WebServer } from './web-server.js';

export interface NwebOptions {
  readonly fsSlot: number;
  readonly limits?: DcLimits;
  readonly port: number;
  readonly address: string;
  /** The FS directory served as the site's `/`. */
  readonly root: string;
}

export const DEFAULT_NWEB_PORT = 8080;

export class NwebService implements Service {
  private server: WebServer | undefined;

  constructor(private readonly opts: NwebOptions) {}

  /** The port it listens on, once it does. */
  port: number | undefined;

  movable(): string {
    return 'NWEB listens on a TCP port of its node';
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    const files = new FsWebFiles(ipc, new SlotPeer(this.opts.fsSlot, this.opts.limits ?? DEFAULT_DC_LIMITS), this.opts.root);
    const server = new WebServer(files);
    this.server = server;
    try {
      this.port = await server.listen(this.opts.port, this.opts.address);
    } catch (err) {
      throw new DvsError('EDVSADDRINUSE', `NWEB cannot listen on ${this.opts.address}:${this.opts.port}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      await server.close();
      this.server = undefined;
    }
  }
}

/** The factory a service host loads NWEB by: `createService({fs, limits?, port?, address?, root?})`. */
export function createService(args?: Payload): Service {
  const a = (typeof args === 'object' && args !== null && !Array.isArray(args) && !(args instanceof Uint8Array) ? args : {}) as Record<string, unknown>;
  if (typeof a.fs !== 'number') throw new DvsError('EDVSINVAL', 'NWEB needs fs: the slot of its FS', { details: { field: 'fs' } });
  return new NwebService({
    fsSlot: a.fs,
    ...(typeof a.limits === 'object' && a.limits !== null ? { limits: a.limits as unknown as DcLimits } : {}),
    port: typeof a.port === 'number' ? a.port : DEFAULT_NWEB_PORT,
    address: typeof a.address === 'string' ? a.address : '127.0.0.1',
    root: typeof a.root === 'string' ? a.root : '/',
  });
}
