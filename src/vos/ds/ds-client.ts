/**
 * Typed calls to DS over any M3-IPC handle (a kernel Process, the client library's RemoteProcess):
 * each is one sendrec to the DS endpoint, its reply checked and a failure rethrown as the DvsError
 * DS sent. The wire format is docs/vos/ds.md; this is a convenience, not the only way to speak it.
 */
import type { AbortLike, M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { fromWireError, isPlainMap } from '../../transport/proc-protocol.js';
import { checkEndpointField, DS_LIST, DS_LOOKUP, DS_OK, DS_PUBLISH, DS_UNPUBLISH, DS_WAIT, type DsEntry } from './ds-messages.js';

export interface DsClientOptions {
  /** Bound of each call but `waitFor`, in ms (-1: none). Default 10 s. */
  readonly timeoutMs?: number;
  /** How much longer than its wait a `waitFor` call waits for DS's answer (DS's own timeout answer comes first). Default 2 s. */
  readonly graceMs?: number;
  readonly signal?: AbortLike;
}

export interface PublishResult {
  readonly endpoint: Endpoint;
  /** The endpoint the name mapped to before, when this publish took it over. */
  readonly replaced?: Endpoint;
}

export interface ListPage {
  readonly entries: DsEntry[];
  /** Pass as `after` for the next page; absent on the last. */
  readonly next?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_GRACE_MS = 2_000;

function malformed(what: string): never {
  throw new DvsError('EDVSIO', `DS replied with a malformed answer: ${what}`);
}

export class DsClient {
  private readonly timeoutMs: number;
  private readonly graceMs: number;

  constructor(
    private readonly ipc: M3Ipc,
    /** The DS endpoint of the caller's DC. */
    readonly ds: Endpoint,
    private readonly opts: DsClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** Maps `name` to `endpoint` (default: the caller's own). EDVSEXIST when a live endpoint holds it, unless `replace`. */
  async publish(name: string, o: { endpoint?: Endpoint; replace?: boolean } = {}): Promise<PublishResult> {
    const payload: Record<string, Payload> = { name };
    if (o.endpoint !== undefined) payload.endpoint = o.endpoint;
    if (o.replace !== undefined) payload.replace = o.replace;
    const r = await this.call(DS_PUBLISH, payload, this.timeoutMs);
    const endpoint = checkEndpointField(r.endpoint);
    return r.replaced === undefined ? { endpoint } : { endpoint, replaced: checkEndpointField(r.replaced, 'replaced') };
  }

  /** The endpoint `name` maps to; EDVSNOENT when none. */
  async lookup(name: string): Promise<Endpoint> {
    return checkEndpointField((await this.call(DS_LOOKUP, { name }, this.timeoutMs)).endpoint);
  }

  /** The endpoint `name` maps to, once it is published; EDVSTIMEDOUT after `timeoutMs` (0..DS_MAX_WAIT_MS). */
  async waitFor(name: string, timeoutMs: number): Promise<Endpoint> {
    const callTimeout = this.timeoutMs < 0 ? -1 : timeoutMs + this.graceMs;
    return checkEndpointField((await this.call(DS_WAIT, { name, timeoutMs }, callTimeout)).endpoint);
  }

  /** Removes `name`; EDVSPERM unless the caller published it, is the endpoint it names, or passes `force`. Returns the endpoint it named. */
  async unpublish(name: string, o: { force?: boolean } = {}): Promise<Endpoint> {
    const payload: Record<string, Payload> = o.force === undefined ? { name } : { name, force: o.force };
    return checkEndpointField((await this.call(DS_UNPUBLISH, payload, this.timeoutMs)).endpoint);
  }

  /** One page of names starting with `prefix`, in name order. */
  async listPage(prefix = '', after?: string, limit?: number): Promise<ListPage> {
    const payload: Record<string, Payload> = { prefix };
    if (after !== undefined) payload.after = after;
    if (limit !== undefined) payload.limit = limit;
    const r = await this.call(DS_LIST, payload, this.timeoutMs);
    if (!Array.isArray(r.entries)) malformed('entries is not an array');
    const entries = (r.entries as unknown[]).map((e) => {
      if (!isPlainMap(e) || typeof e.name !== 'string') malformed('an entry is not {name, endpoint}');
      return { name: e.name, endpoint: checkEndpointField(e.endpoint) };
    });
    if (r.next !== undefined && typeof r.next !== 'string') malformed('next is not a string');
    return r.next === undefined ? { entries } : { entries, next: r.next };
  }

  /** Every name starting with `prefix`, following the pages. */
  async list(prefix = ''): Promise<DsEntry[]> {
    const out: DsEntry[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.listPage(prefix, after);
      out.push(...page.entries);
      if (page.next === undefined) return out;
      after = page.next;
    }
  }

  /** One request: the reply's fields on success, its DvsError thrown otherwise. */
  private async call(type: number, payload: Payload, timeoutMs: number): Promise<Record<string, unknown>> {
    const opts = this.opts.signal === undefined ? { timeoutMs } : { timeoutMs, signal: this.opts.signal };
    const m = await this.ipc.sendrec(this.ds, { type, payload }, opts);
    const r = m.payload;
    if (!isPlainMap(r) || typeof r.ok !== 'boolean') malformed('not {ok, ...}');
    if (!r.ok) throw fromWireError(r.error);
    if (m.type !== DS_OK) malformed(`ok with reply type ${m.type}`);
    return r;
  }
}
