/**
 * The directory's cache of the whole key layout, kept current by one watch: what every lookup reads
 * (the message path never touches the store). It applies each key's change, emits the change as an
 * event, and lets writers wait until it reflects their revision (read your writes). When its watch
 * ends it rebuilds itself from a fresh read, emitting the differences.
 */
import { EndpointSpace, type Endpoint } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Clock, TimerHandle } from '../../kernel/clock.js';
import type { DirectoryKeys, ParsedKey } from '../keys.js';
import type { CoordinationStore, KeyValue, Unsubscribe, WatchEvent } from '../store.js';
import { asDvsError, fail } from './failures.js';
import { parseDc, parseEndpoint, parseInstanceGroup, parseFreeze, parseNode, parseReservation, withFreeze } from './parse.js';
import type { DcRecord, EmitDirectoryEvent, EndpointRecord, FreezeMarker, GenEntry, InstanceGroupRecord, NodeRecord, Reservation, VosRecordEntry } from './records.js';

/** Everything cached of one DC. A DC's keys may be cached before its record (not in a normal order of writes). */
export interface DcState {
  record: DcRecord | undefined;
  modRevision: number;
  space: EndpointSpace | undefined;
  readonly eps: Map<number, EndpointRecord>;
  readonly gens: Map<number, GenEntry>;
  readonly resv: Map<number, Reservation>;
  readonly frz: Map<number, FreezeMarker>;
  readonly inst: Map<number, InstanceGroupRecord>;
}

/** A cached DC whose record is known. */
export type KnownDc = DcState & { record: DcRecord; space: EndpointSpace };

export function isKnown(s: DcState | undefined): s is KnownDc {
  return s?.record !== undefined && s.space !== undefined;
}

export interface CacheHooks {
  readonly emit: EmitDirectoryEvent;
  /** A reservation key of `dcid/slot` changed (put or deleted). */
  readonly reservationChanged: (dcid: number, slot: number) => void;
}

interface RevisionWaiter {
  readonly rev: number;
  readonly resolve: () => void;
}

export class DirectoryCache {
  private readonly nodeMap = new Map<number, NodeRecord>();
  private readonly dcMap = new Map<number, DcState>();
  private readonly vosMap = new Map<number, VosRecordEntry>();
  /** Every cached key and its modRevision, to diff against a fresh read on resync. */
  private readonly known = new Map<string, number>();
  private rev = 0;
  private revWaiters: RevisionWaiter[] = [];
  private flushScheduled = false;

  private unwatch: Unsubscribe | undefined;
  private started: Promise<void> | undefined;
  private resyncTimer: TimerHandle | undefined;
  private resyncing = false;
  private isClosed = false;

  constructor(
    private readonly store: CoordinationStore,
    private readonly keys: DirectoryKeys,
    private readonly clock: Clock,
    private readonly cacheWaitMs: number,
    private readonly hooks: CacheHooks,
  ) {}

  get closed(): boolean {
    return this.isClosed;
  }

  /** Loads the cache (emitting events for what exists: nodes, then DCs, then endpoints) and starts the watch. */
  start(): Promise<void> {
    if (this.started === undefined) {
      const loading = this.load();
      this.started = loading;
      // A load that failed (the store unreachable) is tried again by the next call.
      loading.catch(() => {
        if (this.started === loading) this.started = undefined;
      });
    }
    return this.started;
  }

  /** Stops the watch; pending revision waits resolve. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.resyncTimer !== undefined) this.clock.clearTimer(this.resyncTimer);
    this.unwatch?.();
    this.unwatch = undefined;
    for (const w of this.revWaiters.splice(0)) w.resolve();
  }

  checkOpen(): void {
    if (this.isClosed) fail('EDVSSHUTDOWN', 'directory closed');
  }

  /** The store revision the cache reflects. */
  get revision(): number {
    return this.rev;
  }

  /** Resolves once the cache reflects `revision`; EDVSTIMEDOUT after `timeoutMs`. */
  waitForRevision(revision: number, timeoutMs = this.cacheWaitMs): Promise<void> {
    if (this.rev >= revision || this.isClosed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(timeoutMs, () => {
        this.revWaiters = this.revWaiters.filter((w) => w !== waiter);
        reject(new DvsError('EDVSTIMEDOUT', `directory cache did not reach revision ${revision} within ${timeoutMs} ms (at ${this.rev})`));
      });
      const waiter: RevisionWaiter = {
        rev: revision,
        resolve: () => {
          this.clock.clearTimer(timer);
          resolve();
        },
      };
      this.revWaiters.push(waiter);
    });
  }

  /** Waits for the cache to reflect a write of ours; a slow watch delays, never fails, the write. */
  async catchUp(revision: number): Promise<void> {
    try {
      await this.waitForRevision(revision);
    } catch {
      // The write is done; the cache will follow.
    }
  }

  // ---------------------------------------------------------------- lookups

  node(nodeId: number): NodeRecord | undefined {
    return this.nodeMap.get(nodeId);
  }

  nodes(): NodeRecord[] {
    return [...this.nodeMap.values()].sort((a, b) => a.nodeId - b.nodeId);
  }

  dc(dcid: number): DcRecord | undefined {
    return this.dcMap.get(dcid)?.record;
  }

  dcs(): DcRecord[] {
    const out: DcRecord[] = [];
    for (const s of this.dcMap.values()) if (s.record !== undefined) out.push(s.record);
    return out.sort((a, b) => a.dcid - b.dcid);
  }

  /** The cached state of a DC, for the directory's writers. */
  state(dcid: number): DcState | undefined {
    return this.dcMap.get(dcid);
  }

  endpoints(dcid: number): EndpointRecord[] {
    const s = this.dcMap.get(dcid);
    if (s === undefined) return [];
    return [...s.eps.values()].sort((a, b) => a.slot - b.slot);
  }

  /** The instance groups of a DC, by slot order. */
  instanceGroups(dcid: number): InstanceGroupRecord[] {
    const st = this.dcMap.get(dcid);
    return st === undefined ? [] : [...st.inst.values()].sort((a, b) => a.slot - b.slot);
  }

  instanceGroup(dcid: number, slot: number): InstanceGroupRecord | undefined {
    return this.dcMap.get(dcid)?.inst.get(slot);
  }

  vos(dcid: number): VosRecordEntry | undefined {
    return this.vosMap.get(dcid);
  }

  endpointAt(dcid: number, slot: number): EndpointRecord | undefined {
    return this.dcMap.get(dcid)?.eps.get(slot);
  }

  lookup(dcid: number, endpoint: Endpoint): EndpointRecord | undefined {
    const s = this.dcMap.get(dcid);
    if (s?.space === undefined || !Number.isSafeInteger(endpoint)) return undefined;
    const rec = s.eps.get(s.space.slotOf(endpoint));
    return rec?.endpoint === endpoint ? rec : undefined;
  }

  findByName(dcid: number, name: string): EndpointRecord | undefined {
    for (const rec of this.dcMap.get(dcid)?.eps.values() ?? []) if (rec.name === name) return rec;
    return undefined;
  }

  generation(dcid: number, slot: number): number {
    return this.dcMap.get(dcid)?.gens.get(slot)?.generation ?? -1;
  }

  // ---------------------------------------------------------------- the watch

  private async load(): Promise<void> {
    this.checkOpen();
    const r = await this.store.getPrefix(this.keys.prefix);
    this.applySnapshot(r.entries, r.revision);
    await this.watchFrom(r.revision);
  }

  private async watchFrom(revision: number): Promise<void> {
    const unwatch = await this.store.watch(this.keys.prefix, revision, (ev) => this.onWatchEvent(ev), { onError: (err) => this.onWatchError(err) });
    if (this.isClosed) unwatch();
    else this.unwatch = unwatch;
  }

  private onWatchEvent(ev: WatchEvent): void {
    if (this.isClosed) return;
    if (ev.type === 'put') {
      this.applyKey(ev.key, { key: ev.key, value: ev.value, createRevision: ev.createRevision, modRevision: ev.revision, version: ev.version, ...(ev.lease === undefined ? {} : { lease: ev.lease }) });
    } else {
      this.applyKey(ev.key, undefined);
    }
    this.setRevision(ev.revision);
  }

  private onWatchError(err: DvsError): void {
    if (this.isClosed) return;
    // The watch ended (history compacted, store reset, ...): rebuild from a fresh read.
    this.hooks.emit('error', err);
    this.unwatch?.();
    this.unwatch = undefined;
    this.scheduleResync(0);
  }

  private scheduleResync(delayMs: number): void {
    if (this.isClosed || this.resyncing || this.resyncTimer !== undefined) return;
    this.resyncTimer = this.clock.setTimer(delayMs, () => {
      this.resyncTimer = undefined;
      this.resyncing = true;
      this.resync().then(
        () => {
          this.resyncing = false;
        },
        (err: unknown) => {
          this.resyncing = false;
          this.hooks.emit('error', asDvsError(err));
          this.scheduleResync(Math.min(5000, Math.max(100, delayMs * 2)));
        },
      );
    });
  }

  /** Rebuilds the cache from a fresh read, emitting the differences as events, and watches again. */
  private async resync(): Promise<void> {
    if (this.isClosed) return;
    const r = await this.store.getPrefix(this.keys.prefix);
    const fresh = new Map(r.entries.map((kv) => [kv.key, kv]));
    const gone = [...this.known.keys()].filter((k) => !fresh.has(k));
    // Endpoints and reservations first, then DCs, then nodes: the reverse of creation.
    gone.sort((a, b) => rank(this.keys.parse(b)) - rank(this.keys.parse(a)));
    // Freeze markers go after the new entries: an endpoint moved while we were not watching is seen
    // frozen at its new place, then thawed there, never thawed at the old one.
    const isMarker = (k: string): boolean => this.keys.parse(k)?.kind === 'frz';
    for (const k of gone) if (!isMarker(k)) this.applyKey(k, undefined);
    this.applySnapshot(
      r.entries.filter((kv) => this.known.get(kv.key) !== kv.modRevision),
      r.revision,
    );
    for (const k of gone) if (isMarker(k)) this.applyKey(k, undefined);
    await this.watchFrom(r.revision);
    this.hooks.emit('resync', { revision: r.revision });
  }

  private applySnapshot(entries: KeyValue[], revision: number): void {
    const sorted = [...entries].sort((a, b) => rank(this.keys.parse(a.key)) - rank(this.keys.parse(b.key)) || (a.key < b.key ? -1 : 1));
    for (const kv of sorted) this.applyKey(kv.key, kv);
    this.setRevision(revision);
  }

  private setRevision(revision: number): void {
    if (revision > this.rev) this.rev = revision;
    // The other events of this revision are delivered in the same synchronous run: settle waiters after it.
    if (this.revWaiters.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        const ready = this.revWaiters.filter((w) => w.rev <= this.rev);
        this.revWaiters = this.revWaiters.filter((w) => w.rev > this.rev);
        for (const w of ready) w.resolve();
      });
    }
  }

  // ---------------------------------------------------------------- applying changes

  private dcState(dcid: number): DcState {
    let s = this.dcMap.get(dcid);
    if (s === undefined) {
      s = { record: undefined, modRevision: 0, space: undefined, eps: new Map(), gens: new Map(), resv: new Map(), frz: new Map(), inst: new Map() };
      this.dcMap.set(dcid, s);
    }
    return s;
  }

  /** Applies one key's new state (undefined: deleted) to the cache and emits the change. */
  private applyKey(key: string, kv: KeyValue | undefined): void {
    const p = this.keys.parse(key);
    if (p === undefined) return;
    if (kv === undefined) this.known.delete(key);
    else this.known.set(key, kv.modRevision);
    try {
      this.applyParsed(p, key, kv);
    } catch (err) {
      this.hooks.emit('error', asDvsError(err));
    }
  }

  private applyParsed(p: ParsedKey, key: string, kv: KeyValue | undefined): void {
    switch (p.kind) {
      case 'incarnation':
        return;
      case 'node':
        return this.applyNode(p.nodeId, key, kv);
      case 'dc':
        return this.applyDc(p.dcid, key, kv);
      case 'vos': {
        if (kv === undefined) {
          if (this.vosMap.delete(p.dcid)) this.hooks.emit('vos', { type: 'removed', dcid: p.dcid });
          return;
        }
        const entry: VosRecordEntry = { dcid: p.dcid, value: kv.value, modRevision: kv.modRevision };
        this.vosMap.set(p.dcid, entry);
        this.hooks.emit('vos', { type: 'set', entry });
        return;
      }
      case 'gen': {
        const s = this.dcState(p.dcid);
        if (kv === undefined) s.gens.delete(p.slot);
        else if (typeof kv.value === 'number' && Number.isSafeInteger(kv.value)) s.gens.set(p.slot, { generation: kv.value, modRevision: kv.modRevision });
        else this.malformed(key);
        return;
      }
      case 'resv': {
        const s = this.dcState(p.dcid);
        // Any change to a reservation ends what this directory had in flight for the slot.
        this.hooks.reservationChanged(p.dcid, p.slot);
        const r = kv === undefined ? undefined : parseReservation(kv);
        if (kv !== undefined && r === undefined) this.malformed(key);
        if (r === undefined) s.resv.delete(p.slot);
        else s.resv.set(p.slot, r);
        return;
      }
      case 'ep':
        return this.applyEndpoint(p.dcid, p.slot, key, kv);
      case 'frz':
        return this.applyFreeze(p.dcid, p.slot, key, kv);
      case 'inst': {
        const st = this.dcState(p.dcid);
        const prev = st.inst.get(p.slot);
        const rec = kv === undefined ? undefined : parseInstanceGroup(kv, p.dcid, p.slot);
        if (kv !== undefined && rec === undefined) this.malformed(key);
        if (rec === undefined) {
          if (prev !== undefined) {
            st.inst.delete(p.slot);
            this.hooks.emit('instances', { type: 'removed', group: prev });
          }
          return;
        }
        st.inst.set(p.slot, rec);
        this.hooks.emit('instances', prev === undefined ? { type: 'set', group: rec } : { type: 'set', group: rec, previous: prev });
        return;
      }
    }
  }

  private applyNode(nodeId: number, key: string, kv: KeyValue | undefined): void {
    const prev = this.nodeMap.get(nodeId);
    const rec = kv === undefined ? undefined : parseNode(kv, nodeId);
    if (kv !== undefined && rec === undefined) this.malformed(key);
    if (rec === undefined) {
      if (prev !== undefined) {
        this.nodeMap.delete(nodeId);
        this.hooks.emit('node', { type: 'down', node: prev });
      }
      return;
    }
    this.nodeMap.set(nodeId, rec);
    if (prev !== undefined && prev.incarnation !== rec.incarnation) {
      this.hooks.emit('node', { type: 'down', node: prev });
      this.hooks.emit('node', { type: 'up', node: rec });
    } else {
      this.hooks.emit('node', { type: prev === undefined ? 'up' : 'changed', node: rec });
    }
  }

  private applyDc(dcid: number, key: string, kv: KeyValue | undefined): void {
    const s = this.dcState(dcid);
    const prev = s.record;
    const rec = kv === undefined ? undefined : parseDc(kv.value, dcid);
    if (kv === undefined || rec === undefined) {
      if (kv !== undefined) this.malformed(key);
      if (prev === undefined) return;
      // Whatever is still cached under the DC goes with it (normally already deleted, endpoints first).
      for (const ep of [...s.eps.values()]) this.hooks.emit('endpoint', { type: 'unbound', endpoint: ep });
      this.dcMap.delete(dcid);
      for (const k of [...this.known.keys()]) if (k.startsWith(this.keys.dcTree(dcid))) this.known.delete(k);
      this.hooks.emit('dc', { type: 'removed', dc: prev });
      return;
    }
    s.record = rec;
    s.modRevision = kv.modRevision;
    s.space = new EndpointSpace(rec.limits);
    this.hooks.emit('dc', prev === undefined ? { type: 'created', dc: rec } : { type: 'changed', dc: rec, previous: prev });
    // Endpoints cached before their DC (not in a normal order of writes) are announced now.
    if (prev === undefined) for (const ep of s.eps.values()) this.hooks.emit('endpoint', { type: 'bound', endpoint: ep });
  }

  private applyEndpoint(dcid: number, slot: number, key: string, kv: KeyValue | undefined): void {
    const s = this.dcState(dcid);
    const prev = s.eps.get(slot);
    const parsed = kv === undefined ? undefined : parseEndpoint(kv, dcid, slot);
    if (kv !== undefined && parsed === undefined) this.malformed(key);
    const rec = parsed === undefined ? undefined : withFreeze(parsed, s.frz.get(slot));
    const known = s.record !== undefined;
    if (rec === undefined) {
      if (prev === undefined) return;
      s.eps.delete(slot);
      if (known) this.hooks.emit('endpoint', { type: 'unbound', endpoint: prev });
      return;
    }
    s.eps.set(slot, rec);
    if (!known) return;
    if (prev !== undefined && prev.endpoint !== rec.endpoint) {
      this.hooks.emit('endpoint', { type: 'unbound', endpoint: prev });
      this.hooks.emit('endpoint', { type: 'bound', endpoint: rec });
    } else {
      this.hooks.emit('endpoint', prev === undefined ? { type: 'bound', endpoint: rec } : { type: 'bound', endpoint: rec, previous: prev });
    }
  }

  /** A freeze marker put or deleted: the endpoint it names changes its frozen state (a `bound` event with `previous`). */
  private applyFreeze(dcid: number, slot: number, key: string, kv: KeyValue | undefined): void {
    const s = this.dcState(dcid);
    const marker = kv === undefined ? undefined : parseFreeze(kv);
    if (kv !== undefined && marker === undefined) this.malformed(key);
    if (marker === undefined) s.frz.delete(slot);
    else s.frz.set(slot, marker);
    const prev = s.eps.get(slot);
    if (prev === undefined) return;
    const rec = withFreeze(prev, marker);
    if (rec === prev) return;
    s.eps.set(slot, rec);
    if (s.record !== undefined) this.hooks.emit('endpoint', { type: 'bound', endpoint: rec, previous: prev });
  }

  private malformed(key: string): void {
    this.hooks.emit('error', new DvsError('EDVSBADVALUE', `malformed directory entry at ${key}: ignored`, { details: { key } }));
  }
}

/** Apply order of a fresh read: nodes, DCs, generations, reservations and freeze markers, endpoints. */
function rank(p: ParsedKey | undefined): number {
  switch (p?.kind) {
    case 'node':
    case 'incarnation':
      return 0;
    case 'dc':
      return 1;
    case 'gen':
    case 'resv':
    case 'frz':
    case 'vos':
    case 'inst':
      return 2;
    case 'ep':
      return 3;
    default:
      return 4;
  }
}
