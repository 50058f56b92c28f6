/**
 * The VOS for applications (docs/vos/boot.md, "From an application"): where a DC's system servers
 * are (the daemon's `vos` request), and typed clients of them over a bound endpoint of the
 * caller. A server that restarted or was taken over by another node holds the same slot at a new
 * endpoint; calls that find its old endpoint gone look the server up again and retry once.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { M3Ipc } from '../ipc/calls.js';
import { DsClient, type DsClientOptions } from '../vos/ds/ds-client.js';
import type { VosServerView, VosView } from '../vos/vos-view.js';
import type { DvsClient } from './client.js';
import type { RemoteProcess } from './remote-process.js';

export type { VosServerView, VosView } from '../vos/vos-view.js';

/** The DC's VOS as its daemon sees it; EDVSNOENT when the DC runs none. */
export async function vosLayout(client: DvsClient, dcid: number): Promise<VosView> {
  return (await client.call('vos', { dcid })) as VosView;
}

/** Errors that say a server's endpoint is gone (it restarted elsewhere, or at a new generation). */
const GONE = ['EDVSDEADSRCDST', 'EDVSDSTDIED', 'EDVSENDPOINT', 'EDVSNOTBIND', 'EDVSBADDEST'] as const;

export function isGoneError(err: unknown): boolean {
  return GONE.some((c) => isDvsError(err, c));
}

export interface OpenVosOptions {
  /** The DC (default: DVS_DC). */
  readonly dcid?: number;
  /** The endpoint to call from (default: a new one bound for this, unbound by `close`). */
  readonly process?: RemoteProcess;
  readonly name?: string;
  readonly timeoutMs?: number;
}

function envDc(): number | undefined {
  const v = process.env.DVS_DC;
  return v === undefined || v === '' || !Number.isSafeInteger(Number(v)) ? undefined : Number(v);
}

/** A DC's VOS seen from one endpoint of a process. */
export class Vos {
  private view: VosView;

  private constructor(
    private readonly client: DvsClient,
    readonly dcid: number,
    readonly process: RemoteProcess,
    private readonly owned: boolean,
    view: VosView,
    private readonly timeoutMs: number | undefined,
  ) {
    this.view = view;
  }

  static async open(client: DvsClient, opts: OpenVosOptions = {}): Promise<Vos> {
    const dcid = opts.dcid ?? opts.process?.dcid ?? envDc();
    if (dcid === undefined) throw new DvsError('EDVSBADDCID', 'no DC given (dcid, or DVS_DC in the environment)');
    const view = await vosLayout(client, dcid);
    const p = opts.process ?? (await client.bind(dcid, { name: opts.name ?? 'vos-client' }));
    return new Vos(client, dcid, p, opts.process === undefined, view, opts.timeoutMs);
  }

  /** The servers as last looked up. */
  get layout(): VosView {
    return this.view;
  }

  /** Looks the servers up again. */
  async refresh(): Promise<VosView> {
    this.view = await vosLayout(this.client, this.dcid);
    return this.view;
  }

  /** The endpoint of `server` (a key of the layout: `pm`, `ds`, `systask@1`); EDVSNOENT when the VOS has none, EDVSAGAIN while it is not bound. */
  async endpointOf(server: string, fresh = false): Promise<Endpoint> {
    let s = this.find(server);
    if (fresh || s?.endpoint === undefined) {
      await this.refresh();
      s = this.find(server);
    }
    if (s === undefined) throw new DvsError('EDVSNOENT', `the VOS of DC ${this.dcid} has no server ${server}`, { details: { server } });
    if (s.endpoint === undefined) throw new DvsError('EDVSAGAIN', `server ${server} of DC ${this.dcid} is not running now (placed on node ${s.node})`, { details: { server } });
    return s.endpoint;
  }

  /**
   * Calls `server` through a client built on its current endpoint; when the endpoint is gone, looks
   * the server up again and calls once more (only calls safe to repeat should pass `retry`).
   */
  async call<C, T>(server: string, make: (ipc: M3Ipc, endpoint: Endpoint) => C, fn: (c: C) => Promise<T>, retry = true): Promise<T> {
    const ep = await this.endpointOf(server);
    try {
      return await fn(make(this.process, ep));
    } catch (err) {
      if (!retry || !isGoneError(err)) throw err;
      const again = await this.endpointOf(server, true);
      return fn(make(this.process, again));
    }
  }

  /** DS, the name server (docs/vos/ds.md). */
  ds<T>(fn: (ds: DsClient) => Promise<T>, opts: DsClientOptions = {}): Promise<T> {
    const o = this.timeoutMs === undefined || opts.timeoutMs !== undefined ? opts : { ...opts, timeoutMs: this.timeoutMs };
    return this.call('ds', (ipc, ep) => new DsClient(ipc, ep, o), fn);
  }

  async close(): Promise<void> {
    if (this.owned && this.process.bound) await this.process.unbind().catch(() => undefined);
  }

  private find(server: string): VosServerView | undefined {
    return this.view.servers.find((s) => s.key === server);
  }
}
