/**
 * DS's table: name → endpoint, with who published it (only the publisher, or the endpoint itself,
 * may take a name away without `force`). The rules that need no I/O live here; whether a holder is
 * still alive is the server's question (ds-server.ts), asked before it calls in.
 */
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import { DS_MAX_NAMES, type DsEntry } from './ds-messages.js';

export interface NameRecord {
  readonly endpoint: Endpoint;
  /** The endpoint that published it (the request's `source`). */
  readonly publisher: Endpoint;
}

export class NameTable {
  private readonly names = new Map<string, NameRecord>();

  constructor(private readonly maxNames = DS_MAX_NAMES) {}

  get size(): number {
    return this.names.size;
  }

  get(name: string): NameRecord | undefined {
    return this.names.get(name);
  }

  /** Maps `name` to `rec`, over whatever held it (the caller checked the holder may be replaced); EDVSNOSPC when full. */
  set(name: string, rec: NameRecord): void {
    if (!this.names.has(name) && this.names.size >= this.maxNames) {
      throw new DvsError('EDVSNOSPC', `DS holds ${this.maxNames} names, its limit`, { details: { limit: this.maxNames } });
    }
    this.names.set(name, rec);
  }

  /** Removes `name` when `by` may: its publisher, the endpoint it names, or anyone with `force`. */
  remove(name: string, by: Endpoint, force: boolean): NameRecord {
    const rec = this.names.get(name);
    if (rec === undefined) throw notFound(name);
    if (!force && by !== rec.publisher && by !== rec.endpoint) {
      throw new DvsError('EDVSPERM', `name ${JSON.stringify(name)} was published by endpoint ${rec.publisher}; only it (or the endpoint it names, or force) may unpublish it`, { details: { name, publisher: rec.publisher } });
    }
    this.names.delete(name);
    return rec;
  }

  /** Drops `name` if it still maps to `endpoint` (a holder found dead). */
  drop(name: string, endpoint: Endpoint): void {
    if (this.names.get(name)?.endpoint === endpoint) this.names.delete(name);
  }

  /** Names starting with `prefix` and sorting after `after`, in code-unit order, at most `limit`; `more` when some were left. */
  list(prefix: string, after: string | undefined, limit: number): { entries: DsEntry[]; more: boolean } {
    const names: string[] = [];
    for (const n of this.names.keys()) if (n.startsWith(prefix) && (after === undefined || n > after)) names.push(n);
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const page = names.slice(0, limit);
    return { entries: page.map((name) => ({ name, endpoint: this.names.get(name)!.endpoint })), more: names.length > limit };
  }

  entries(): [string, NameRecord][] {
    return [...this.names];
  }

  clear(): void {
    this.names.clear();
  }
}

export function notFound(name: string): DvsError {
  return new DvsError('EDVSNOENT', `no name ${JSON.stringify(name)} is published`, { details: { name } });
}
