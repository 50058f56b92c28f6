/**
 * Instance groups (docs/instances.md): one endpoint of a stateless service bound by an instance on
 * each of several nodes. A send, sendrec or notify to it from this node goes to one live member,
 * chosen by power of two choices on this kernel's own calls in flight per member (two members drawn
 * at random, the one with fewer outstanding calls; this node's own instance is a member like the
 * others). A call whose member fails before answering (its node down, its instance gone, the
 * request refused there) is sent again to another live member: the service is stateless, so its
 * calls are idempotent by contract, and a killed instance costs no failed call. The caller's
 * timeout and abort cover the whole call, resends included; delivery still wins.
 */
import type { CallOptions, NotifyOutcome } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError, type DvsErrorCode } from '../ipc/errors.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import type { TimerHandle } from './clock.js';
import { fail, type KernelCore } from './core.js';
import type { DcState } from './dc.js';
import { RecvMode, type LocalProc, type RecvWait } from './proc.js';
import { ownerOf, type GroupRoute, type InstanceSet } from './routes.js';
import { Waiter } from './waiter.js';

/** Errors that say "this member did not serve the call": the call goes to another member. */
const RESEND_CODES: ReadonlySet<DvsErrorCode> = new Set<DvsErrorCode>(['EDVSNOTCONN', 'EDVSDEADSRCDST', 'EDVSDSTDIED', 'EDVSNONODE', 'EDVSNOTBIND', 'EDVSENDPOINT', 'EDVSNODCNODE', 'EDVSBADDCID', 'EDVSSHUTDOWN']);
/** Attempts of one call, resends and waits for a member included (about 5 s when no member is live). */
const MAX_ATTEMPTS = 40;
const WAIT_MS = 10;
const WAIT_MAX_MS = 200;

/** An abort signal the kernel fires itself: it ends the current attempt when the caller gives up. */
class AttemptSignal {
  aborted = false;
  private listeners: (() => void)[] = [];
  addEventListener(_type: 'abort', listener: () => void): void {
    this.listeners.push(listener);
  }
  removeEventListener(_type: 'abort', listener: () => void): void {
    this.listeners = this.listeners.filter((l) => l !== listener);
  }
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const l of this.listeners.splice(0)) l();
  }
}

interface LbCall<T> {
  readonly kind: 'send' | 'sendrec';
  readonly dc: DcState;
  readonly inst: InstanceSet;
  readonly proc: LocalProc;
  readonly dst: Endpoint;
  readonly msg: OutgoingMessage;
  readonly outer: Waiter<T>;
  /** Members that failed this call: not chosen again until every live member has been tried. */
  readonly excluded: Set<number>;
  attempts: number;
  waits: number;
  signal: AttemptSignal | undefined;
  backoff: TimerHandle | undefined;
  lastError: DvsError | undefined;
}

/** A small deterministic PRNG (xorshift32) for kernels given no random source. */
export function seededRandom(seed: number): () => number {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

export interface InstanceInfo {
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly epoch: number;
  /** Members by the directory. */
  readonly members: readonly number[];
  /** Members calls may go to now (node up; this node: its instance bound). */
  readonly live: readonly number[];
  /** This kernel's calls in flight per member. */
  readonly load: Readonly<Record<number, number>>;
  /** Calls this kernel sent per member. */
  readonly sent: Readonly<Record<number, number>>;
  readonly resent: number;
}

export class InstanceCalls {
  constructor(private readonly k: KernelCore) {}

  // ---------------------------------------------------------------- membership

  /**
   * Sets the instance group of `endpoint`: its members by the directory. A newer generation of the
   * slot replaces an older group; an older one is ignored (false). The slot's route becomes
   * group(the other members) unless an instance is bound here.
   */
  set(dc: DcState, endpoint: Endpoint, members: readonly number[], epoch: number, name: string | undefined): boolean {
    const slot = dc.space.checkEndpoint(endpoint);
    for (const m of members) if (!dc.nodes.has(m)) fail('EDVSNODCNODE', `node ${m} is not a member of DC ${dc.dcid}`);
    let inst = dc.routes.instancesAt(slot);
    const gen = dc.space.generationOf(endpoint);
    if (inst !== undefined && inst.endpoint !== endpoint) {
      if (gen < dc.space.generationOf(inst.endpoint)) return false;
      this.clear(dc, inst.endpoint);
      inst = undefined;
    }
    const cur = dc.routes.at(slot);
    if (inst === undefined) {
      if (cur !== undefined && cur.endpoint !== endpoint) {
        if (ownerOf(cur) !== undefined) fail('EDVSSLOTUSED', `slot ${slot} is bound locally`, { slot });
        this.k.cascade.dropRemote(dc, cur);
      }
      inst = { endpoint, slot, name: name ?? cur?.name ?? `ep${slot}`, epoch, members: [], load: new Map(), sent: new Map(), resent: 0 };
    }
    const before = new Set(inst.members);
    inst.members = [...new Set(members)].sort((a, b) => a - b);
    inst.epoch = epoch;
    if (name !== undefined) inst.name = name;
    dc.routes.setInstances(inst);
    this.refreshRoute(dc, inst);
    // Calls waiting on a member no longer listed go elsewhere.
    for (const m of before) if (!inst.members.includes(m) && m !== this.k.nodeId) this.failMember(dc, inst, m);
    return true;
  }

  /** The slot no longer holds an instance group: its route (when not a local instance) goes. */
  clear(dc: DcState, endpoint: Endpoint): void {
    const inst = dc.routes.instancesOf(endpoint);
    if (inst === undefined) return;
    dc.routes.clearInstances(inst.slot);
    const cur = dc.routes.at(inst.slot);
    if (cur !== undefined && ownerOf(cur) === undefined && cur.endpoint === endpoint) this.k.cascade.dropRemote(dc, cur);
  }

  /** The route of an instance slot with no instance bound here: group(the other members). */
  refreshRoute(dc: DcState, inst: InstanceSet): void {
    const cur = dc.routes.at(inst.slot);
    if (ownerOf(cur) !== undefined) return;
    const others = inst.members.filter((m) => m !== this.k.nodeId);
    const route: GroupRoute = { kind: 'group', endpoint: inst.endpoint, slot: inst.slot, epoch: inst.epoch, name: inst.name, members: others, primary: others[0] ?? -1 };
    dc.routes.set(inst.slot, route);
    this.k.fireWatches(dc, inst.slot);
  }

  /** The instance on `node` is gone (its `unbound`): calls waiting on it there go to another member. */
  memberGone(dc: DcState, inst: InstanceSet, node: number): void {
    inst.members = inst.members.filter((m) => m !== node);
    this.refreshRoute(dc, inst);
    this.failMember(dc, inst, node);
  }

  /** Local calls waiting on `inst` at `node` end with EDVSDEADSRCDST, and so are sent again elsewhere. */
  private failMember(dc: DcState, inst: InstanceSet, node: number): void {
    const ep = inst.endpoint;
    for (const p of dc.routes.locals()) {
      const w = p.recv;
      if (w === undefined || w.from !== ep) continue;
      if (w.mode === RecvMode.SendrecReply && w.node === node) {
        p.recv = undefined;
        w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep, node } }));
      } else if (w.mode === RecvMode.SendrecSending) {
        const op = this.k.remote.sendrecOp(p, ep);
        if (op === undefined || op.node !== node) continue;
        this.k.remote.outstanding.delete(op.id);
        p.sending--;
        p.recv = undefined;
        w.waiter.reject(new DvsError('EDVSDEADSRCDST', undefined, { details: { endpoint: ep, node } }));
      }
    }
  }

  /** This node's instance was unbound: local calls it had taken go elsewhere; the route becomes the group's. */
  localGone(dc: DcState, inst: InstanceSet): void {
    const ep = inst.endpoint;
    for (const p of dc.routes.locals()) {
      const w = p.recv;
      if (w === undefined || w.from !== ep || w.node !== undefined) continue;
      if (w.mode === RecvMode.SendrecReply || w.mode === RecvMode.Receive) {
        p.recv = undefined;
        w.waiter.reject(new DvsError(w.mode === RecvMode.Receive ? 'EDVSSRCDIED' : 'EDVSDEADSRCDST', undefined, { details: { endpoint: ep } }));
      }
    }
    this.refreshRoute(dc, inst);
  }

  /** Members a call may go to now: listed, node up; this node when its instance is bound. */
  live(dc: DcState, inst: InstanceSet): number[] {
    const me = this.k.nodeId;
    const out: number[] = [];
    for (const m of inst.members) if (m !== me && dc.nodes.has(m) && !this.k.downNodes.has(m)) out.push(m);
    const local = ownerOf(dc.routes.at(inst.slot));
    if (local !== undefined && local.alive && local.endpoint === inst.endpoint) out.push(me);
    return out.sort((a, b) => a - b);
  }

  /** Power of two choices among the live members not in `excluded`. */
  pick(dc: DcState, inst: InstanceSet, excluded: ReadonlySet<number>): number | undefined {
    const c = this.live(dc, inst).filter((n) => !excluded.has(n));
    if (c.length <= 1) return c[0];
    const rnd = this.k.random;
    const i = Math.floor(rnd() * c.length) % c.length;
    let j = Math.floor(rnd() * (c.length - 1)) % (c.length - 1);
    if (j >= i) j++;
    const a = c[i] as number;
    const b = c[j] as number;
    return (inst.load.get(b) ?? 0) < (inst.load.get(a) ?? 0) ? b : a;
  }

  info(dc: DcState, inst: InstanceSet): InstanceInfo {
    return {
      endpoint: inst.endpoint,
      name: inst.name,
      epoch: inst.epoch,
      members: [...inst.members],
      live: this.live(dc, inst),
      load: Object.fromEntries(inst.load),
      sent: Object.fromEntries(inst.sent),
      resent: inst.resent,
    };
  }

  // ---------------------------------------------------------------- calls

  send(proc: LocalProc, inst: InstanceSet, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<void> {
    return this.call<void>('send', proc, inst, dst, msg, opts);
  }

  sendrec(proc: LocalProc, inst: InstanceSet, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message> {
    if (proc.recv !== undefined) fail('EDVSBUSY', 'a receive-side call is already in progress on this endpoint');
    return this.call<Message>('sendrec', proc, inst, dst, msg, opts);
  }

  notify(proc: LocalProc, inst: InstanceSet, dst: Endpoint, arg: number): NotifyOutcome {
    const dc = proc.dc;
    const node = this.pick(dc, inst, new Set());
    if (node === undefined) fail('EDVSNOTCONN', `no live instance of ${dc.space.format(dst)}`);
    const local = ownerOf(dc.routes.at(inst.slot));
    if (node === this.k.nodeId && local !== undefined) return this.k.rendezvous.notifyLocal(local, proc.endpoint, proc.privId, arg);
    proc.counters.rmtSent++;
    this.k.emit(node, { k: 'notify', dc: dc.dcid, src: proc.endpoint, dst, arg });
    return 'sent';
  }

  private call<T>(kind: 'send' | 'sendrec', proc: LocalProc, inst: InstanceSet, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<T> {
    const outer = new Waiter<T>();
    const call: LbCall<T> = { kind, dc: proc.dc, inst, proc, dst, msg, outer, excluded: new Set(), attempts: 0, waits: 0, signal: undefined, backoff: undefined, lastError: undefined };
    outer.onExpire = () => {
      if (call.backoff !== undefined) {
        this.k.clock.clearTimer(call.backoff);
        call.backoff = undefined;
        outer.rejectExpired({ endpoint: dst });
      } else call.signal?.abort();
    };
    this.attempt(call);
    outer.start(this.k.clock, opts);
    return outer.promise;
  }

  private attempt<T>(call: LbCall<T>): void {
    const { dc, inst, proc, dst, msg, outer } = call;
    if (outer.settled) return;
    if (!proc.alive) {
      outer.reject(new DvsError('EDVSSHUTDOWN', 'endpoint unbound', { details: { endpoint: proc.endpoint } }));
      return;
    }
    if (call.attempts >= MAX_ATTEMPTS) {
      outer.reject(call.lastError ?? new DvsError('EDVSNOTCONN', `no live instance of ${dc.space.format(dst)}`, { details: { endpoint: dst } }));
      return;
    }
    call.attempts++;
    const node = this.pick(dc, inst, call.excluded);
    if (node === undefined) {
      // No live member now, or every one failed this call once (one is starting, or the directory
      // has not caught up): wait a little, then try them all again.
      call.excluded.clear();
      // No live member now (one is starting, or the directory has not caught up): wait a little.
      const ms = Math.min(WAIT_MAX_MS, WAIT_MS * 2 ** call.waits);
      call.waits++;
      call.backoff = this.k.clock.setTimer(ms, () => {
        call.backoff = undefined;
        this.attempt(call);
      });
      return;
    }
    const me = this.k.nodeId;
    const local = ownerOf(dc.routes.at(inst.slot));
    const route = node === me && local !== undefined ? local : ({ kind: 'group', endpoint: inst.endpoint, slot: inst.slot, epoch: inst.epoch, name: inst.name, members: [node], primary: node } satisfies GroupRoute);
    const signal = new AttemptSignal();
    call.signal = signal;
    inst.load.set(node, (inst.load.get(node) ?? 0) + 1);
    inst.sent.set(node, (inst.sent.get(node) ?? 0) + 1);
    if (call.attempts > 1) inst.resent++;
    const inner = new Waiter<T>();
    const rv = this.k.rendezvous;
    try {
      if (call.kind === 'sendrec') {
        const recv: RecvWait = { mode: RecvMode.SendrecSending, from: dst, waiter: inner as unknown as Waiter<Message> };
        proc.recv = recv;
        // A late reply to an earlier attempt (its member was given up but answered after all)
        // carries that attempt's request id: it must not complete this one.
        if (route.kind === 'local') proc.sendrecOpId = 0;
        try {
          rv.routeSendrec(proc, route, dst, msg, recv, true);
        } catch (err) {
          if (proc.recv === recv) proc.recv = undefined;
          throw err;
        }
      } else {
        rv.routeSend(proc, route, dst, msg, inner as unknown as Waiter<void>, true);
      }
    } catch (err) {
      inner.reject(isDvsError(err) ? err : new DvsError('EDVSIO', String(err)));
    }
    inner.start(this.k.clock, { signal });
    inner.promise.then(
      (v) => {
        this.done(inst, node);
        outer.resolve(v);
      },
      (err: unknown) => {
        this.done(inst, node);
        this.failed(call, node, isDvsError(err) ? err : new DvsError('EDVSIO', String(err)));
      },
    );
  }

  private done(inst: InstanceSet, node: number): void {
    const n = (inst.load.get(node) ?? 1) - 1;
    if (n > 0) inst.load.set(node, n);
    else inst.load.delete(node);
  }

  private failed<T>(call: LbCall<T>, node: number, err: DvsError): void {
    const { outer, proc } = call;
    call.signal = undefined;
    if (outer.settled) return;
    if (outer.expired !== undefined) {
      outer.rejectExpired({ endpoint: call.dst });
      return;
    }
    if (!RESEND_CODES.has(err.code) || !proc.alive) {
      outer.reject(err);
      return;
    }
    if (call.kind === 'sendrec' && proc.recv !== undefined && proc.recv.from === call.dst && proc.recv.waiter.settled) proc.recv = undefined;
    call.excluded.add(node);
    call.lastError = err;
    this.attempt(call);
  }
}
