/**
 * The VOS for applications (docs/vos/boot.md, "From an application"): where a DC's system servers
 * are (the daemon's `vos` request), and typed clients of them over a bound endpoint of the
 * caller. A server that restarted or was taken over by another node holds the same slot at a new
 * endpoint; a call that finds its old endpoint gone looks the server up again and is made once more.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { M3Ipc } from '../ipc/calls.js';
import { DsClient, type DsClientOptions } from '../vos/ds/ds-client.js';
import { PmClient, type PmClientOptions } from '../vos/pm/pm-client.js';
import type { VosServerView, VosView } from '../vos/vos-view.js';
import type { DvsClient } from './client.js';
import type { RemoteProcess } from './remote-process.js';
import { fsCaller, VosFiles } from './vos-fs.js';

export type { VosServerView, VosView } from '../vos/vos-view.js';

/** The DC's VOS as its daemon sees it; EDVSNOENT when the DC runs none. */
export async function vosLayout(client: DvsClient, dcid: number): Promise<VosView> {
  return (await client.call('vos', { dcid })) as VosView;
}

/**
 * Errors that say a server's endpoint is gone before the call reached it (it restarted, or was
 * taken over, at a new generation of its slot): safe to make again at its new endpoint. A server
 * that died with the call in hand (EDVSDEADSRCDST, EDVSDSTDIED) may have acted on it, so those
 * reach the caller (PM's wait retries them itself, by its waitId).
 */
const UNDELIVERED = ['EDVSENDPOINT', 'EDVSNOTBIND', 'EDVSBADDEST'] as const;

export function isUndeliveredError(err: unknown): boolean {
  return UNDELIVERED.some((c) => isDvsError(err, c));
}

export interface OpenVosOptions {
  /** The DC (default: DVS_DC). */
  readonly dcid?: number;
  /** The endpoint to call from (default: a new one bound for this, unbound by `close`). */
  readonly process?: RemoteProcess;
  readonly name?: string;
  readonly timeoutMs?: number;
  /** How long a PM wait interrupted by PM's end waits for PM to be back (restarted, taken over) before it retries. Default 30 s. */
  readonly rebindMs?: number;
}

/** How long a retried PM wait waits for PM to be back at a new endpoint, by default. */
const REBIND_MS = 30_000;
const REBIND_POLL_MS = 100;

function envDc(): number | undefined {
  const v = process.env.DVS_DC;
  return v === undefined || v === '' || !Number.isSafeInteger(Number(v)) ? undefined : Number(v);
}

/** A DC's VOS seen from one endpoint of a process. */
export class Vos {
  private view: VosView;
  /** The end of the last call: one endpoint has one thread of control, so calls from this Vos are made one at a time. */
  private tail: Promise<unknown> = Promise.resolve();
  private files: VosFiles | undefined;

  private constructor(
    private readonly client: DvsClient,
    readonly dcid: number,
    readonly process: RemoteProcess,
    private readonly owned: boolean,
    view: VosView,
    private readonly timeoutMs: number | undefined,
    private readonly rebindMs: number,
  ) {
    this.view = view;
  }

  static async open(client: DvsClient, opts: OpenVosOptions = {}): Promise<Vos> {
    const dcid = opts.dcid ?? opts.process?.dcid ?? envDc();
    if (dcid === undefined) throw new DvsError('EDVSBADDCID', 'no DC given (dcid, or DVS_DC in the environment)');
    const view = await vosLayout(client, dcid);
    const p = opts.process ?? (await client.bind(dcid, { name: opts.name ?? 'vos-client' }));
    return new Vos(client, dcid, p, opts.process === undefined, view, opts.timeoutMs, opts.rebindMs ?? REBIND_MS);
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
   * Calls `server` through a client built on its current endpoint; when the call did not reach it
   * because that endpoint is gone, looks the server up again and calls once more. Calls wait for
   * the ones before them (a long PM wait holds the others: open another Vos to wait and work at once).
   */
  call<C, T>(server: string, make: (ipc: M3Ipc, endpoint: Endpoint) => C, fn: (c: C) => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.callNow(server, make, fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async callNow<C, T>(server: string, make: (ipc: M3Ipc, endpoint: Endpoint) => C, fn: (c: C) => Promise<T>): Promise<T> {
    const ep = await this.endpointOf(server);
    try {
      return await fn(make(this.process, ep));
    } catch (err) {
      if (!isUndeliveredError(err)) throw err;
      const again = await this.endpointOf(server, true);
      return fn(make(this.process, again));
    }
  }

  /** This process's own VOS pid when PM started it (DVS_VOS_PID), else 1 (the DC's init). */
  get pid(): number {
    const v = Number(process.env.DVS_VOS_PID);
    return Number.isSafeInteger(v) && v > 1 ? v : 1;
  }

  /**
   * PM, the process manager (docs/vos/pm.md). A wait that PM's restart interrupts is retried by
   * the client with its waitId, PM looked up again for each retry.
   */
  pm<T>(fn: (pm: PmClient) => Promise<T>, opts: PmClientOptions = {}): Promise<T> {
    const o = this.timeoutMs === undefined || opts.timeoutMs !== undefined ? opts : { ...opts, timeoutMs: this.timeoutMs };
    const make = (ipc: M3Ipc, ep: Endpoint): PmClient => {
      let current = ep;
      // A retried wait: PM went away; its successor binds the slot at a new endpoint.
      return new PmClient(ipc, async (retry) => (retry ? (current = await this.endpointAfter('pm', current, this.rebindMs)) : current), o);
    };
    return this.call('pm', make, fn);
  }

  /** DS, the name server (docs/vos/ds.md). */
  ds<T>(fn: (ds: DsClient) => Promise<T>, opts: DsClientOptions = {}): Promise<T> {
    const o = this.timeoutMs === undefined || opts.timeoutMs !== undefined ? opts : { ...opts, timeoutMs: this.timeoutMs };
    return this.call('ds', (ipc, ep) => new DsClient(ipc, ep, o), fn);
  }

  /** The DC's files, with the shape of Node's `fs/promises` (docs/vos/fs.md). */
  get fs(): VosFiles {
    return (this.files ??= new VosFiles(fsCaller((server, make, fn) => this.call(server, make, fn), this.timeoutMs)));
  }

  async close(): Promise<void> {
    if (this.owned && this.process.bound) await this.process.unbind().catch(() => undefined);
  }

  /** The endpoint of `server` once it is another than `old` (it restarted or was taken over), looking it up every 100 ms for at most `waitMs`; then whatever it is. */
  private async endpointAfter(server: string, old: Endpoint, waitMs: number): Promise<Endpoint> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      await this.refresh();
      const ep = this.find(server)?.endpoint;
      if ((ep !== undefined && ep !== old) || Date.now() >= deadline) return ep ?? this.endpointOf(server);
      await new Promise((r) => setTimeout(r, REBIND_POLL_MS));
    }
  }

  private find(server: string): VosServerView | undefined {
    return this.view.servers.find((s) => s.key === server);
  }
}
