/**
 * A simulated network between kernels: one `KernelTransport` per node. Every frame travels for a
 * latency drawn from the seeded PRNG, but each link (ordered pair of nodes) stays FIFO: a frame is
 * delivered at max(last delivery on its link, now + latency). Frames are deep-copied when sent, so
 * kernels never share objects, as over a real wire. A crashed node's frames are dropped both ways,
 * and after a detection delay every kernel on the other side of the break is told `nodeDown`.
 */
import type { FrameKind, KernelFrame, KernelTransport } from '../kernel/frames.js';
import type { TimerHandle } from '../kernel/clock.js';
import type { Prng } from './prng.js';
import type { SimClock } from './sim-clock.js';

/** What the network delivers to: a kernel, or anything that speaks like one. */
export interface NetworkPeer {
  receiveFrame(from: number, frame: KernelFrame): void;
  nodeDown(node: number): void;
  nodeUp(node: number): void;
}

export interface LatencyRange {
  /** Milliseconds, inclusive; integers give equal-time ties that the seeded tie-breaker orders. */
  readonly min: number;
  readonly max: number;
}

export interface SimNetworkOptions {
  readonly latency?: LatencyRange;
  /** Virtual ms between a crash and the other side's `nodeDown`. Default 100. */
  readonly detectionDelay?: number;
  /** Receives one line per delivered or dropped frame and per failure event. */
  readonly trace?: (event: string) => void;
}

export interface NetworkStats {
  sent: number;
  delivered: number;
  /** Frames lost to a crash: in flight when it happened, or sent to or from a crashed node. */
  dropped: number;
  droppedByKind: Partial<Record<FrameKind, number>>;
}

interface InFlight {
  readonly frame: KernelFrame;
  readonly at: number;
  timer: TimerHandle;
}

interface Link {
  readonly from: number;
  readonly to: number;
  /** Delivery time of the latest frame put on the link. */
  last: number;
  readonly queue: InFlight[];
}

export const DEFAULT_LATENCY: LatencyRange = Object.freeze({ min: 1, max: 10 });
export const DEFAULT_DETECTION_DELAY = 100;

function cutKey(a: number, b: number): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

/** One line for a frame in a trace: its kind, id and the endpoints it names. */
export function describeFrame(f: KernelFrame): string {
  switch (f.k) {
    case 'send':
      return `send#${f.id} ${f.src}->${f.dst} type=${f.type}${f.rec ? ' rec' : ''}`;
    case 'send-ack':
      return `send-ack#${f.id} rc=${f.rc}${f.node === undefined ? '' : ` node=${f.node}`}`;
    case 'cancel':
    case 'cancel-ack':
      return `${f.k}#${f.id}`;
    case 'reply':
      return `reply ${f.src}->${f.dst} type=${f.type}`;
    case 'reply-cancel':
      return `reply-cancel#${f.id} ${f.client}->${f.server}`;
    case 'reply-cancel-ack':
      return `reply-cancel-ack#${f.id} ${f.client}`;
    case 'notify':
      return `notify ${f.src}->${f.dst} arg=${f.arg}`;
    case 'unbound':
      return `unbound ${f.ep}`;
    case 'copy-read':
      return `copy-read#${f.id} ${f.requester}:${f.owner}/${f.grant}@${f.offset}+${f.length}`;
    case 'copy-write':
      return `copy-write#${f.id} ${f.requester}:${f.owner}/${f.grant}@${f.offset}+${f.data.byteLength}`;
    case 'copy-data':
      return `copy-data#${f.id} rc=${f.rc}${f.data === undefined ? '' : ` +${f.data.byteLength}`}`;
    case 'copy-ack':
      return `copy-ack#${f.id} rc=${f.rc}`;
    case 'copy-relay':
      return `copy-relay#${f.id} ${f.requester}:${f.owner}/${f.grant}@${f.offset}+${f.length}>n${f.dstNode}:${f.dstOwner}/${f.dstGrant}@${f.dstOffset}`;
    default:
      return `frame ${String((f as { k?: unknown }).k)}`;
  }
}

export class SimNetwork {
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, droppedByKind: {} };
  private readonly clock: SimClock;
  private readonly prng: Prng;
  private readonly latency: LatencyRange;
  private readonly detectionDelay: number;
  private readonly trace: ((event: string) => void) | undefined;
  private readonly peers = new Map<number, NetworkPeer>();
  private readonly links = new Map<string, Link>();
  private readonly crashed = new Set<number>();
  /** "a>b": node a has been told that b is down (and not yet that it is back). */
  private readonly declaredDown = new Set<string>();
  /** Pending failure detections by crashed node. */
  private readonly detections = new Map<number, TimerHandle>();
  /** Cut links, as "a|b" with a < b, and their pending detections. */
  private readonly cuts = new Map<string, TimerHandle | undefined>();

  constructor(clock: SimClock, prng: Prng, opts: SimNetworkOptions = {}) {
    this.clock = clock;
    this.prng = prng;
    const latency = opts.latency ?? DEFAULT_LATENCY;
    if (!Number.isInteger(latency.min) || !Number.isInteger(latency.max) || latency.min < 0 || latency.max < latency.min) {
      throw new RangeError(`latency must be integers with 0 <= min <= max, got ${latency.min}..${latency.max}`);
    }
    this.latency = latency;
    this.detectionDelay = opts.detectionDelay ?? DEFAULT_DETECTION_DELAY;
    this.trace = opts.trace;
  }

  /** Registers the kernel of `node` and returns the transport that kernel sends through. */
  attach(node: number, peer: NetworkPeer): KernelTransport {
    if (this.peers.has(node)) throw new RangeError(`node ${node} is already attached`);
    this.peers.set(node, peer);
    return { send: (to, frame) => this.send(node, to, frame) };
  }

  nodes(): number[] {
    return [...this.peers.keys()];
  }

  isCrashed(node: number): boolean {
    return this.crashed.has(node);
  }

  /** Frames on their way. */
  inFlight(): number {
    let n = 0;
    for (const l of this.links.values()) n += l.queue.length;
    return n;
  }

  /**
   * Cuts `node` off: frames in flight to or from it are lost, new ones are dropped; after the
   * detection delay, every other node is told it is down and it is told every other node is.
   */
  crash(node: number): void {
    this.peer(node);
    if (this.crashed.has(node)) return;
    this.crashed.add(node);
    this.trace?.(`crash n${node}`);
    for (const l of this.links.values()) {
      if (l.from !== node && l.to !== node) continue;
      for (const f of l.queue) {
        this.clock.clearTimer(f.timer);
        this.countDrop(f.frame);
        this.trace?.(`n${l.from}>n${l.to} lost ${describeFrame(f.frame)}`);
      }
      l.queue.length = 0;
    }
    this.detections.set(
      node,
      this.clock.setTimer(this.detectionDelay, () => {
        this.detections.delete(node);
        this.declare(node);
      }, `detect n${node}`),
    );
  }

  /** Reconnects `node`: a detection still pending is declared first, then everyone is told it is back. */
  restore(node: number): void {
    this.peer(node);
    if (!this.crashed.has(node)) return;
    const pending = this.detections.get(node);
    if (pending !== undefined) {
      // Frames were lost, so the break must be declared before the link counts as up again.
      this.clock.clearTimer(pending);
      this.detections.delete(node);
      this.declare(node);
    }
    this.crashed.delete(node);
    this.trace?.(`restore n${node}`);
    for (const other of this.peers.keys()) {
      if (other === node || this.crashed.has(other) || this.cuts.has(cutKey(node, other))) continue;
      this.markUp(other, node);
      this.markUp(node, other);
    }
  }

  /**
   * Cuts the link between `a` and `b` both ways (a partition): frames in flight between them are
   * lost, new ones dropped; after the detection delay each is told the other is down.
   */
  partition(a: number, b: number): void {
    this.peer(a);
    this.peer(b);
    const key = cutKey(a, b);
    if (a === b || this.cuts.has(key)) return;
    this.trace?.(`partition n${a}|n${b}`);
    for (const l of this.links.values()) {
      if (!((l.from === a && l.to === b) || (l.from === b && l.to === a))) continue;
      for (const f of l.queue) {
        this.clock.clearTimer(f.timer);
        this.countDrop(f.frame);
      }
      l.queue.length = 0;
    }
    this.cuts.set(
      key,
      this.clock.setTimer(this.detectionDelay, () => {
        this.cuts.set(key, undefined);
        this.markDown(a, b);
        this.markDown(b, a);
      }, `detect n${a}|n${b}`),
    );
  }

  /** Mends a cut link: a detection still pending is declared first, then both are told the other is back. */
  heal(a: number, b: number): void {
    const key = cutKey(a, b);
    if (!this.cuts.has(key)) return;
    const pending = this.cuts.get(key);
    if (pending !== undefined) {
      this.clock.clearTimer(pending);
      this.markDown(a, b);
      this.markDown(b, a);
    }
    this.cuts.delete(key);
    this.trace?.(`heal n${a}|n${b}`);
    if (this.crashed.has(a) || this.crashed.has(b)) return;
    this.markUp(a, b);
    this.markUp(b, a);
  }

  /** Whether `observer` currently counts `node` as reachable (not declared down). */
  linked(observer: number, node: number): boolean {
    return !this.declaredDown.has(`${observer}>${node}`);
  }

  private declare(node: number): void {
    for (const other of this.peers.keys()) {
      if (other === node) continue;
      this.markDown(other, node);
      this.markDown(node, other);
    }
  }

  private markDown(observer: number, node: number): void {
    const key = `${observer}>${node}`;
    if (this.declaredDown.has(key)) return;
    this.declaredDown.add(key);
    this.trace?.(`n${observer} down n${node}`);
    this.peer(observer).nodeDown(node);
  }

  private markUp(observer: number, node: number): void {
    const key = `${observer}>${node}`;
    if (!this.declaredDown.delete(key)) return;
    this.trace?.(`n${observer} up n${node}`);
    this.peer(observer).nodeUp(node);
  }

  private peer(node: number): NetworkPeer {
    const p = this.peers.get(node);
    if (p === undefined) throw new RangeError(`no node ${node} on this network`);
    return p;
  }

  private send(from: number, to: number, frame: KernelFrame): void {
    this.stats.sent++;
    if (!this.peers.has(to) || this.crashed.has(from) || this.crashed.has(to) || (this.cuts.size > 0 && this.cuts.has(cutKey(from, to)))) {
      this.countDrop(frame);
      this.trace?.(`n${from}>n${to} drop ${describeFrame(frame)}`);
      return;
    }
    const key = `${from}>${to}`;
    let link = this.links.get(key);
    if (link === undefined) this.links.set(key, (link = { from, to, last: 0, queue: [] }));
    const at = Math.max(link.last, this.clock.now() + this.prng.int(this.latency.min, this.latency.max));
    link.last = at;
    // Deep copy at send time: the receiver gets what was sent, whatever the sender does next.
    const entry: InFlight = { frame: structuredClone(frame), at, timer: undefined };
    link.queue.push(entry);
    // Timers of one link all deliver the link's head: equal-time timers may fire in any order, but
    // the k-th timer of a link to fire is due at the k-th frame's time, so FIFO order is kept.
    entry.timer = this.clock.setTimer(at - this.clock.now(), () => this.deliverHead(link), 'net');
  }

  private countDrop(frame: KernelFrame): void {
    this.stats.dropped++;
    this.stats.droppedByKind[frame.k] = (this.stats.droppedByKind[frame.k] ?? 0) + 1;
  }

  private deliverHead(link: Link): void {
    const f = link.queue.shift();
    if (f === undefined) return;
    this.stats.delivered++;
    this.trace?.(`n${link.from}>n${link.to} ${describeFrame(f.frame)}`);
    this.peer(link.to).receiveFrame(link.from, f.frame);
  }
}
