/**
 * The endpoints one process connection bound, and the grants it registered for each: a connection
 * acts only for its own endpoints, within its endpoint and grant limits, and unbinds them all when
 * it closes.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import type { Logger } from '../runtime/logger.js';

function key(dcid: number, endpoint: Endpoint): string {
  return `${dcid}:${endpoint}`;
}

export class ConnEndpoints {
  /** Endpoints this connection bound, by `dcid:endpoint`. */
  private readonly procs = new Map<string, Process>();
  /** The endpoint the last request acted for (see find). */
  private last: Process | undefined;
  /** Grant ids registered per endpoint key. */
  private readonly grants = new Map<string, Set<number>>();
  private grantCount = 0;
  /** Binds started and not finished: they count against the endpoint limit. */
  bindsInFlight = 0;

  constructor(
    private readonly maxEndpoints: number,
    private readonly maxGrants: number,
  ) {}

  /** Endpoints bound and still alive. */
  list(): { dcid: number; endpoint: Endpoint; name: string }[] {
    const out: { dcid: number; endpoint: Endpoint; name: string }[] = [];
    for (const p of this.procs.values()) if (p.bound) out.push({ dcid: p.dcid, endpoint: p.endpoint, name: p.name });
    return out;
  }

  /** The calling process: an endpoint this connection bound and that is still bound (EDVSNOTBIND otherwise). */
  find(dcid: number, endpoint: Endpoint): Process {
    // Most connections act for one endpoint: the last one found needs no key string.
    const last = this.last;
    if (last !== undefined && last.endpoint === endpoint && last.dcid === dcid && last.bound) return last;
    const p = this.procs.get(key(dcid, endpoint));
    if (p === undefined || !p.bound) {
      if (p !== undefined) this.forget(p);
      throw new DvsError('EDVSNOTBIND', `endpoint ${endpoint} of DC ${dcid} is not bound by this connection`, { details: { endpoint } });
    }
    this.last = p;
    return p;
  }

  /** The endpoint if this connection bound it and has not forgotten it, bound or not (a retired one of a move too). */
  get(dcid: number, endpoint: Endpoint): Process | undefined {
    return this.procs.get(key(dcid, endpoint));
  }

  /** EDVSNOSPC when one more bind would pass the limit (endpoints the kernel unbound meanwhile do not count). */
  checkRoom(): void {
    for (const p of this.procs.values()) if (!p.bound) this.forget(p);
    if (this.procs.size + this.bindsInFlight >= this.maxEndpoints) throw new DvsError('EDVSNOSPC', `a connection may bind at most ${this.maxEndpoints} endpoints`, { details: { limit: this.maxEndpoints } });
  }

  add(p: Process): void {
    this.procs.set(key(p.dcid, p.endpoint), p);
  }

  /** EDVSNOSPC when the connection holds as many grants as it may. */
  checkGrantRoom(): void {
    if (this.grantCount >= this.maxGrants) throw new DvsError('EDVSNOSPC', `a connection may hold at most ${this.maxGrants} grants`, { details: { limit: this.maxGrants } });
  }

  addGrant(p: Process, grant: number): void {
    const k = key(p.dcid, p.endpoint);
    let set = this.grants.get(k);
    if (set === undefined) this.grants.set(k, (set = new Set()));
    set.add(grant);
    this.grantCount++;
  }

  dropGrant(p: Process, grant: number): void {
    const set = this.grants.get(key(p.dcid, p.endpoint));
    if (set?.delete(grant) === true) this.grantCount--;
  }

  /** Stops tracking an endpoint (unbound here or by the kernel); its grants vanish with it. */
  forget(p: Process): void {
    if (this.last === p) this.last = undefined;
    const k = key(p.dcid, p.endpoint);
    this.procs.delete(k);
    const set = this.grants.get(k);
    if (set !== undefined) {
      this.grantCount -= set.size;
      this.grants.delete(k);
    }
  }

  /** Unbinds every endpoint still bound (the kernel cascades the errors) and forgets them all. */
  unbindAll(kernel: Kernel, logger: Logger, conn: number): void {
    for (const p of [...this.procs.values()]) {
      this.forget(p);
      if (!p.bound) continue;
      try {
        kernel.unbind(p.dcid, p.endpoint);
      } catch (err) {
        logger.debug({ conn, endpoint: p.endpoint, err: (err as Error).message }, 'unbind on disconnect failed');
      }
    }
  }
}
