/**
 * Directory → kernel reconciliation: makes one node's kernel and links follow the cluster
 * directory, driven by its change events. The node's peers are the nodes the directory lists
 * (plus those whose link is still alive); the DCs that include this node run in its kernel with
 * their members; every endpoint published elsewhere is a route of the kernel at its epoch, frozen
 * while the directory says so; the node's own binds are claimed in the directory first and
 * released after; a lost registration is made again and the node's endpoints published again.
 */
import type { AbortLike } from '../ipc/calls.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { Directory, DcRecord, EndpointRecord, InstanceGroupRecord, NodeInfo } from './directory.js';
import { NodeRegistration, type RegistrationStatus } from './registration.js';

/** Where a peer's link listener is. */
/** How much later than a group's failover deadline the kernel's freeze would end by itself. */
const FAILOVER_SLACK_MS = 1000;

export interface PeerAddress {
  readonly nodeId: number;
  readonly host: string;
  readonly port: number;
}

/** What the reconciler needs of the node's links. */
export interface PeerLinks {
  /** The whole set of peers to link with. */
  setPeers(peers: readonly PeerAddress[]): void;
  /** Whether the link to `node` is alive (up or suspect). */
  linkAlive(node: number): boolean;
}

/** What the reconciler reports as it goes (the daemon publishes these for subscribers). */
export interface ReconcilerEvents {
  dc?(e: { readonly type: 'joined' | 'changed' | 'left'; readonly dcid: number; readonly nodes: readonly number[] }): void;
  registration?(status: RegistrationStatus): void;
  /** A directory change the kernel could not apply (logged too). */
  refused?(e: { readonly what: string; readonly error: DvsError }): void;
}

export interface ReconcilerOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly links: PeerLinks;
  readonly clock: Clock;
  /** What this node registers: its link listener and meta. */
  readonly node: () => Omit<NodeInfo, 'nodeId'>;
  /** Lease of the node's registration. */
  readonly ttlMs: number;
  readonly logger?: Logger;
  readonly events?: ReconcilerEvents;
  /** Wall-clock ms for registration times (default Date.now). */
  readonly wallClock?: () => number;
  /** Delays between registration attempts after a lost lease (default 100 ms doubling to 5 s). */
  readonly retryMs?: { readonly first: number; readonly max: number };
  /** How long a freeze parks calls when the directory gives no lifetime. Default 10 s. */
  readonly defaultFreezeMs?: number;
}

export interface LocalBindOptions {
  readonly slot?: number;
  /** Exact endpoint (slot and generation): EDVSENDPOINT when the slot's next generation is another. */
  readonly endpoint?: number;
  readonly name?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortLike;
}

interface DcWaiter {
  readonly dcid: number;
  readonly resolve: () => void;
}

export class Reconciler {
  readonly registration: NodeRegistration;
  private readonly opts: ReconcilerOptions;
  private readonly me: number;
  private readonly kernel: Kernel;
  private readonly directory: Directory;
  private readonly log: Logger;
  private peers = new Map<number, PeerAddress>();
  private readonly unsubscribe: (() => void)[] = [];
  private dcWaiters: DcWaiter[] = [];
  /** Replica groups' primaries elsewhere, by `dcid/slot`, as last seen (RADAR). */
  private readonly groups = new Map<string, EndpointRecord>();
  private readonly failoverTimers = new Map<string, TimerHandle>();
  private stopped = false;

  constructor(opts: ReconcilerOptions) {
    this.opts = opts;
    this.me = opts.nodeId;
    this.kernel = opts.kernel;
    this.directory = opts.directory;
    this.log = opts.logger ?? silentLogger;
    this.registration = new NodeRegistration({
      directory: opts.directory,
      info: () => ({ nodeId: this.me, ...opts.node() }),
      ttlMs: opts.ttlMs,
      clock: opts.clock,
      logger: this.log,
      ...(opts.wallClock === undefined ? {} : { wallClock: opts.wallClock }),
      ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
      registeredAgain: () => this.restoreEndpoints(),
      changed: (s) => opts.events?.registration?.(s),
    });
  }

  /** Follows the directory from now on (what exists is applied first), then registers the node. */
  async start(): Promise<void> {
    const d = this.directory;
    // Listeners first: start() announces what already exists as events.
    this.unsubscribe.push(
      d.on('node', (e) => {
        this.syncPeers();
        if (e.type === 'up' && e.node.nodeId !== this.me) this.sweepLater(e.node.nodeId);
        // An instance's liveness is its node's registration.
        if (e.type !== 'changed') for (const dc of this.kernel.listDcs()) for (const g of d.instanceGroups(dc.dcid)) this.onInstances(g, undefined);
      }),
      d.on('dc', (e) => this.syncDc(e.dc.dcid)),
      d.on('instances', (e) => this.onInstances(e.type === 'removed' ? undefined : e.group, e.type === 'removed' ? e.group : e.previous)),
      d.on('endpoint', (e) => this.onEndpoint(e.type, e.endpoint, e.previous)),
      d.on('leaseLost', (e) => {
        if (e.nodeId === this.me && !this.stopped) this.registration.leaseLost(e.error);
      }),
      d.on('error', (err) => this.log.warn({ err }, 'directory error')),
    );
    await d.start();
    await this.registration.register();
    this.syncPeers();
    for (const dc of d.dcs()) this.syncDc(dc.dcid);
  }

  /** Stops following; leaves the directory cleanly (the node's lease revoked: its keys go at once). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.registration.stop();
    for (const off of this.unsubscribe.splice(0)) off();
    for (const t of this.failoverTimers.values()) this.opts.clock.clearTimer(t);
    this.failoverTimers.clear();
    for (const w of this.dcWaiters.splice(0)) w.resolve();
    await this.directory.flush().catch(() => undefined);
    await this.directory.unregisterNode(this.me).catch(() => undefined);
  }

  status(): { readonly registration: RegistrationStatus } {
    return { registration: this.registration.status() };
  }

  /** Resolves once this node's kernel runs `dcid` (the directory's DC definition reached it). */
  whenDc(dcid: number, timeoutMs = 10_000): Promise<void> {
    if (this.runs(dcid)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.opts.clock.setTimer(timeoutMs, () => {
        this.dcWaiters = this.dcWaiters.filter((w) => w !== waiter);
        reject(new DvsError('EDVSTIMEDOUT', `DC ${dcid} did not reach node ${this.me} within ${timeoutMs} ms`));
      });
      const waiter: DcWaiter = {
        dcid,
        resolve: () => {
          this.opts.clock.clearTimer(timer);
          resolve();
        },
      };
      this.dcWaiters.push(waiter);
    });
  }

  // ---------------------------------------------------------------- local binds

  /**
   * Binds a process of this node: its endpoint is claimed in the directory first (so two nodes
   * never hold one slot), then bound in the kernel; a kernel refusal releases the claim.
   */
  async bind(dcid: number, opts: LocalBindOptions = {}): Promise<Process> {
    const dc = this.directory.dc(dcid);
    if (dc?.nodes.includes(this.me) !== true) throw new DvsError('EDVSBADDCID', `DC ${dcid} does not include node ${this.me}`);
    let slot = opts.slot;
    let generation: number | undefined;
    if (opts.endpoint !== undefined) {
      slot = this.kernel.slotOf(dcid, opts.endpoint);
      if (opts.slot !== undefined && opts.slot !== slot) throw new DvsError('EDVSBADVALUE', `endpoint ${opts.endpoint} is not in slot ${opts.slot}`);
      generation = this.kernel.generationOf(dcid, opts.endpoint);
    }
    const claimed = await this.directory.claimEndpoint(dcid, this.me, {
      ...(slot === undefined ? {} : { slot }),
      ...(generation === undefined ? {} : { generation }),
      ...(opts.name === undefined ? {} : { name: opts.name }),
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
    });
    try {
      return this.kernel.bind(dcid, { endpoint: claimed, ...(opts.name === undefined ? {} : { name: opts.name }) });
    } catch (err) {
      await this.directory.releaseEndpoint(dcid, claimed).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Binds this node's instance of an instance group (docs/instances.md): its endpoint is the
   * group's, from the group's record, and is not claimed in the directory (the record is its claim).
   */
  bindInstance(dcid: number, slot: number): Process {
    const g = this.directory.instanceGroup(dcid, slot);
    if (g === undefined) throw new DvsError('EDVSNOENT', `DC ${dcid} has no instance group in slot ${slot}`, { details: { dcid, slot } });
    if (!this.runs(dcid)) throw new DvsError('EDVSBADDCID', `DC ${dcid} does not run on node ${this.me}`);
    this.onInstances(g, undefined);
    return this.kernel.bind(dcid, { endpoint: g.endpoint, name: g.name });
  }

  /** A local endpoint was unbound (the kernel's observer): its directory entry goes, unless it moved away. */
  localUnbound(dcid: number, endpoint: number): void {
    // An instance of a group: it was never published.
    if (this.isInstance(dcid, endpoint)) return;
    this.release(dcid, endpoint, 0);
    // The slot may already hold another node's newer endpoint that could not be routed while this
    // one was bound here (a node fenced out after a lost lease): route it now.
    queueMicrotask(() => {
      if (this.stopped || !this.runs(dcid)) return;
      const rec = this.directory.endpointAt(dcid, this.kernel.slotOf(dcid, endpoint));
      if (rec !== undefined && rec.node !== this.me) this.onEndpoint('bound', rec, undefined);
    });
  }

  /** Releases until it lands: a store out of reach must not leave a dead endpoint published. */
  private release(dcid: number, endpoint: number, attempt: number): void {
    this.directory.releaseEndpoint(dcid, endpoint, { node: this.me }).catch((err: unknown) => {
      if (this.stopped) return;
      if (isDvsError(err, 'EDVSNOTCONN') || isDvsError(err, 'EDVSTIMEDOUT') || isDvsError(err, 'EDVSBUSY')) {
        const retry = this.opts.retryMs ?? { first: 100, max: 5000 };
        this.opts.clock.setTimer(Math.min(retry.max, retry.first * 2 ** Math.min(attempt, 16)), () => this.release(dcid, endpoint, attempt + 1));
        return;
      }
      // Gone already (a lost lease took it, or another node's claim replaced it), or it moved away.
      if (!isDvsError(err, 'EDVSRMTPROC') && !isDvsError(err, 'EDVSSHUTDOWN') && !isDvsError(err, 'EDVSNOTBIND') && !isDvsError(err, 'EDVSENDPOINT')) this.log.warn({ err, dcid, endpoint }, 'could not release endpoint');
    });
  }

  /** The link to `node` went down: a peer kept only because its link was alive now goes. */
  peerDown(node: number): void {
    if (this.peers.has(node) && this.directory.node(node) === undefined) queueMicrotask(() => this.syncPeers());
    // Replica groups whose primary was there: their senders park for the next primary (RADAR).
    for (const ep of [...this.groups.values()]) if (ep.node === node) this.awaitFailover(ep);
  }

  // ---------------------------------------------------------------- instance groups

  private isInstance(dcid: number, endpoint: number): boolean {
    try {
      return this.kernel.instanceInfo(dcid, endpoint) !== undefined;
    } catch {
      return false;
    }
  }

  /**
   * An instance group's record set (or removed: `group` undefined, `previous` the last record): the
   * kernel's group follows, its members the listed nodes that are registered (this node always,
   * its kernel knowing whether its instance is bound).
   */
  private onInstances(group: InstanceGroupRecord | undefined, previous: InstanceGroupRecord | undefined): void {
    if (this.stopped) return;
    const dcid = group?.dcid ?? previous?.dcid;
    if (dcid === undefined || !this.runs(dcid)) return;
    try {
      if (previous !== undefined && (group === undefined || previous.endpoint !== group.endpoint)) this.kernel.clearInstances(dcid, previous.endpoint);
      if (group === undefined) return;
      const inDc = this.directory.dc(dcid)?.nodes ?? [];
      const members = group.nodes.filter((n) => inDc.includes(n) && (n === this.me || this.directory.node(n) !== undefined));
      this.kernel.setInstances(dcid, group.endpoint, { members, epoch: group.modRevision, name: group.name });
    } catch (err) {
      this.refused(`instance group ${group?.slot ?? previous?.slot ?? '?'} of DC ${dcid}`, err);
    }
  }

  // ---------------------------------------------------------------- replica groups (RADAR)

  private groupKey(ep: EndpointRecord): string {
    return `${ep.dcid}/${ep.slot}`;
  }

  /**
   * A replica group's primary `ep` is gone without an unbind (its node died, or its lease with it):
   * new calls park on a frozen route until the next primary's entry sets the route again
   * (bindRemote at a newer epoch releases them there), or `failoverMs` passes with no primary, when
   * the route goes and they fail. False when the route is no longer `ep`'s (nothing to wait for).
   */
  private awaitFailover(ep: EndpointRecord): boolean {
    const route = this.routeOf(ep);
    if (route === undefined || route.kind === 'local' || route.endpoint !== ep.endpoint || route.epoch > ep.epoch) return false;
    const ms = ep.failoverMs ?? this.opts.defaultFreezeMs ?? 10_000;
    // The kernel's own deadline is later than ours: ours drops the route; the kernel's would bring the dead one back.
    if (!this.kernel.freeze(ep.dcid, ep.endpoint, ep.epoch, ms + FAILOVER_SLACK_MS)) return false;
    const key = this.groupKey(ep);
    const timer = this.failoverTimers.get(key);
    if (timer !== undefined) this.opts.clock.clearTimer(timer);
    this.failoverTimers.set(
      key,
      this.opts.clock.setTimer(ms, () => {
        this.failoverTimers.delete(key);
        if (this.stopped) return;
        const now = this.routeOf(ep);
        if (now?.kind !== 'frozen' || now.endpoint !== ep.endpoint || now.epoch !== ep.epoch) return;
        if (this.directory.lookup(ep.dcid, ep.endpoint) !== undefined) return;
        this.log.warn({ dcid: ep.dcid, endpoint: ep.endpoint, failoverMs: ms }, 'no new primary of the replica group in time: its calls fail');
        this.groups.delete(key);
        try {
          this.kernel.unbind(ep.dcid, ep.endpoint);
        } catch (err) {
          this.refused(`endpoint ${ep.endpoint} of DC ${ep.dcid}`, err);
        }
      }),
    );
    return true;
  }

  // ---------------------------------------------------------------- peers and DCs

  /**
   * Peers are the nodes the directory lists, plus those it stopped listing while their link is still
   * alive: a lease lost to a store hiccup must not cut a healthy link; the link's own heartbeats
   * decide when such a node is dead, and the next sync then lets it go.
   */
  private syncPeers(): void {
    if (this.stopped) return;
    const next = new Map<number, PeerAddress>();
    for (const n of this.directory.nodes()) if (n.nodeId !== this.me) next.set(n.nodeId, { nodeId: n.nodeId, host: n.host, port: n.port });
    for (const [id, addr] of this.peers) if (!next.has(id) && this.opts.links.linkAlive(id)) next.set(id, addr);
    this.peers = next;
    this.opts.links.setPeers([...next.values()]);
  }

  private runs(dcid: number): boolean {
    return this.kernel.listDcs().some((d) => d.dcid === dcid);
  }

  /** Makes the kernel's view of one DC match the directory: create, membership, destroy, routes. */
  private syncDc(dcid: number): void {
    if (this.stopped) return;
    const record: DcRecord | undefined = this.directory.dc(dcid);
    const running = this.kernel.listDcs().find((d) => d.dcid === dcid);
    try {
      if (record === undefined || !record.nodes.includes(this.me)) {
        if (running !== undefined) {
          this.kernel.destroyDc(dcid);
          this.log.info({ dcid }, 'left DC');
          this.opts.events?.dc?.({ type: 'left', dcid, nodes: running.nodes });
        }
        return;
      }
      if (running === undefined) {
        this.kernel.createDc({ dcid, name: record.name, nodes: [...record.nodes], limits: record.limits });
        this.log.info({ dcid, nodes: record.nodes }, 'joined DC');
        this.opts.events?.dc?.({ type: 'joined', dcid, nodes: record.nodes });
      } else {
        let changed = false;
        for (const n of record.nodes) {
          if (!running.nodes.includes(n)) {
            this.kernel.addNode(dcid, n);
            changed = true;
          }
        }
        for (const n of running.nodes) {
          if (!record.nodes.includes(n)) {
            this.kernel.removeNode(dcid, n);
            changed = true;
          }
        }
        if (changed) this.opts.events?.dc?.({ type: 'changed', dcid, nodes: record.nodes });
      }
      for (const ep of this.directory.endpoints(dcid)) this.onEndpoint('bound', ep, undefined);
      for (const g of this.directory.instanceGroups(dcid)) this.onInstances(g, undefined);
    } catch (err) {
      this.refused(`DC ${dcid}`, err);
    }
    if (this.runs(dcid)) {
      const ready = this.dcWaiters.filter((w) => w.dcid === dcid);
      this.dcWaiters = this.dcWaiters.filter((w) => w.dcid !== dcid);
      for (const w of ready) w.resolve();
    }
  }

  // ---------------------------------------------------------------- routes

  /** Keeps the kernel's routes in step with the directory's endpoint entries, epoch-checked. */
  private onEndpoint(type: 'bound' | 'unbound', ep: EndpointRecord, previous: EndpointRecord | undefined): void {
    if (this.stopped || !this.runs(ep.dcid)) return;
    const k = this.kernel;
    try {
      if (type === 'unbound') {
        if (ep.node !== this.me) queueMicrotask(() => this.afterUnbound(ep));
        return;
      }
      if (previous !== undefined && previous.endpoint !== ep.endpoint && previous.node !== this.me) this.dropRemote(previous);
      const freezeMs = ep.freezeMs ?? this.opts.defaultFreezeMs ?? 10_000;
      if (ep.node === this.me) {
        // Our own endpoint: only its freeze matters here (a move away is made by a drain, not by the directory).
        const route = this.routeOf(ep);
        if (route === undefined || (route.kind !== 'local' && route.kind !== 'frozen')) return;
        if (ep.frozen) k.freeze(ep.dcid, ep.endpoint, ep.epoch, freezeMs);
        else if (route.kind === 'frozen') k.thaw(ep.dcid, ep.endpoint, ep.epoch);
        return;
      }
      const route = this.routeOf(ep);
      // A replica group's newer primary elsewhere: this node's incarnation was deposed (it woke up late,
      // or lost its leadership with its lease) and must not answer anyone again.
      if (ep.failoverMs !== undefined && route?.kind === 'local' && route.endpoint === ep.endpoint && route.epoch < ep.epoch) {
        this.log.warn({ dcid: ep.dcid, endpoint: ep.endpoint, epoch: route.epoch, newer: ep.epoch, node: ep.node }, 'a newer primary of this replica group serves elsewhere: the local one is deposed');
        k.unbind(ep.dcid, ep.endpoint);
      }
      k.bindRemote(ep.dcid, ep.endpoint, ep.node, ep.name, ep.epoch);
      if (ep.frozen) k.freeze(ep.dcid, ep.endpoint, ep.epoch, freezeMs);
      if (ep.failoverMs !== undefined) this.groups.set(this.groupKey(ep), ep);
    } catch (err) {
      if (!isDvsError(err, 'EDVSSLOTUSED') && !isDvsError(err, 'EDVSNODCNODE')) this.refused(`endpoint ${ep.endpoint} of DC ${ep.dcid}`, err);
    }
  }

  /**
   * Once the whole revision that removed `ep` is applied: the route goes, unless the owner's own
   * registration went with it (a lost lease) while its link lives on: then the owner publishes the
   * endpoint again, and traffic must not be cut meanwhile (see sweepLater for when it does not).
   */
  private afterUnbound(ep: EndpointRecord): void {
    if (this.stopped || this.directory.lookup(ep.dcid, ep.endpoint) !== undefined) return;
    if (ep.failoverMs !== undefined && this.awaitFailover(ep)) return;
    if (this.directory.node(ep.node) === undefined && this.opts.links.linkAlive(ep.node)) return;
    try {
      this.dropRemote(ep);
    } catch (err) {
      this.refused(`endpoint ${ep.endpoint} of DC ${ep.dcid}`, err);
    }
  }

  /**
   * A node registered (again): after it had a lease's time to publish its endpoints again, routes
   * to it that the directory no longer has (kept through its lost lease) go.
   */
  private sweepLater(node: number): void {
    this.opts.clock.setTimer(this.opts.ttlMs, () => {
      if (this.stopped || this.directory.node(node) === undefined) return;
      for (const dc of this.kernel.listDcs()) {
        for (const p of this.kernel.procs(dc.dcid)) {
          if (p.kind !== 'remote' || p.node !== node || this.directory.lookup(dc.dcid, p.endpoint) !== undefined || this.isInstance(dc.dcid, p.endpoint)) continue;
          try {
            this.kernel.unbind(dc.dcid, p.endpoint);
          } catch (err) {
            this.refused(`endpoint ${p.endpoint} of DC ${dc.dcid}`, err);
          }
        }
      }
    });
  }

  private routeOf(ep: EndpointRecord): ReturnType<Kernel['route']> | undefined {
    try {
      return this.kernel.route(ep.dcid, ep.endpoint);
    } catch {
      return undefined;
    }
  }

  private dropRemote(ep: EndpointRecord): void {
    const route = this.routeOf(ep);
    if (route !== undefined && route.kind !== 'local' && !(route.kind === 'frozen' && this.ownsHere(ep))) this.kernel.unbind(ep.dcid, ep.endpoint);
  }

  private ownsHere(ep: EndpointRecord): boolean {
    return this.kernel.procs(ep.dcid).some((p) => p.kind === 'local' && p.endpoint === ep.endpoint);
  }

  // ---------------------------------------------------------------- after a lost registration

  /**
   * Publishes again the endpoints this node still runs, so a lease lost to a store hiccup does not
   * take a healthy node's processes away. An endpoint whose slot was taken meanwhile is unbound
   * here: the directory's newer claim wins (fencing).
   */
  private async restoreEndpoints(): Promise<void> {
    for (const dc of this.kernel.listDcs()) {
      for (const p of this.kernel.procs(dc.dcid)) {
        if (p.kind !== 'local' || this.isInstance(dc.dcid, p.endpoint)) continue;
        try {
          await this.directory.restoreEndpoint(dc.dcid, p.endpoint, this.me, p.name, p.epoch);
          // Unbound while its entry was being restored (its release found nothing): release it now.
          if (!this.kernel.procs(dc.dcid).some((q) => q.kind === 'local' && q.endpoint === p.endpoint)) this.release(dc.dcid, p.endpoint, 0);
        } catch (err) {
          // Only a slot that moved on is given up; a store still coming back is no reason to kill a process.
          if (!isDvsError(err, 'EDVSSLOTUSED')) {
            this.log.warn({ err, dcid: dc.dcid, endpoint: p.endpoint }, 'endpoint could not be published again yet');
            continue;
          }
          // The same endpoint at an older epoch: it moved here and its entry is not flipped yet (the
          // migration agent flips it); the older entry must not fence the newer incarnation.
          const entry = this.directory.lookup(dc.dcid, p.endpoint);
          if (entry !== undefined && entry.endpoint === p.endpoint && entry.epoch < p.epoch) {
            this.log.warn({ dcid: dc.dcid, endpoint: p.endpoint, epoch: p.epoch, entryEpoch: entry.epoch }, 'endpoint moved here and its entry is not flipped yet: kept');
            continue;
          }
          this.log.warn({ err, dcid: dc.dcid, endpoint: p.endpoint }, 'endpoint could not be restored: its slot moved on; unbinding it');
          try {
            this.kernel.unbind(dc.dcid, p.endpoint);
          } catch {
            // already gone
          }
        }
      }
    }
  }

  private refused(what: string, err: unknown): void {
    const error = err instanceof DvsError ? err : new DvsError('EDVSIO', String(err));
    this.log.warn({ err: error, what }, 'could not apply a directory change');
    this.opts.events?.refused?.({ what, error });
  }
}
