/**
 * Runs one incarnation of a service over an endpoint's M3-IPC handle. When the endpoint moves away
 * (the kernel drains it, which ends its pending receive) the runner is retired first, so that
 * receive and every later call of the old incarnation never settle: the service code does not see
 * the move at all, and its new incarnation continues on the other node. A kernel Process does this
 * itself (silence); other handles are wrapped.
 */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef, M3Ipc, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import { STOP_GRACE_MS, type Service, type ServiceContext } from './service.js';

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

export interface RunnerOptions {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly node: number;
  readonly migrated: boolean;
  /** Told when `run` ends by itself (returned or threw) while not retired. */
  readonly onEnd?: (err: unknown) => void;
}

export class ServiceRunner {
  private retiredFlag = false;
  private readonly abort = new AbortController();
  private readonly ipc: M3Ipc;
  private started = false;

  constructor(
    private readonly inner: M3Ipc,
    readonly service: Service,
    private readonly opts: RunnerOptions,
  ) {
    // A kernel handle silences its receive at the drain itself, with no wrapper on every call.
    this.ipc = isSilenceable(inner) ? inner : new RetiringIpc(inner, () => this.retiredFlag);
  }

  get retired(): boolean {
    return this.retiredFlag;
  }

  /** Starts `run` (once). */
  start(): void {
    if (this.started) return;
    this.started = true;
    const ctx: ServiceContext = { dcid: this.opts.dcid, endpoint: this.opts.endpoint, node: this.opts.node, migrated: this.opts.migrated, signal: this.abort.signal };
    void Promise.resolve()
      .then(() => this.service.run(this.ipc, ctx))
      .then(
        () => this.ended(undefined),
        (err: unknown) => this.ended(err),
      );
  }

  /** The service's state for a move: EDVSMIGRATE when it refuses to move now. */
  async snapshot(): Promise<Uint8Array | undefined> {
    const ok = this.service.movable?.() ?? true;
    if (ok !== true) throw new DvsError('EDVSMIGRATE', `the service refuses to move now: ${ok}`);
    const s = await this.service.snapshot?.();
    if (s !== undefined && !(s instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'a service snapshot must be a Uint8Array or undefined');
    return s;
  }

  /** The host stops the service for good: its `stop` hook runs (bounded by STOP_GRACE_MS) while the endpoint is still bound. */
  async stopGracefully(): Promise<void> {
    if (this.retiredFlag || this.service.stop === undefined || !this.started) return;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_GRACE_MS)));
    try {
      await Promise.race([this.service.stop().catch(() => undefined), grace]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The endpoint moved away: this incarnation stops without seeing it. Call before the kernel's drain settles the pending receive. */
  retire(): void {
    if (this.retiredFlag) return;
    this.retiredFlag = true;
    if (isSilenceable(this.inner)) this.inner.silence();
    this.abort.abort();
  }

  private ended(err: unknown): void {
    if (this.retiredFlag) return;
    this.opts.onEnd?.(err);
  }
}

/** An M3-IPC handle whose pending receive a move's drain can leave unsettled (the kernel's Process). */
interface Silenceable extends M3Ipc {
  silence(): void;
}

function isSilenceable(ipc: M3Ipc): ipc is Silenceable {
  return typeof (ipc as Partial<Silenceable>).silence === 'function';
}

/** The calls of an endpoint; once retired, whatever is pending or called never settles. */
class RetiringIpc implements M3Ipc {
  readonly dcid: number;
  readonly endpoint: Endpoint;

  constructor(
    private readonly ipc: M3Ipc,
    private readonly retired: () => boolean,
  ) {
    this.dcid = ipc.dcid;
    this.endpoint = ipc.endpoint;
  }

  private guard<T>(call: () => Promise<T>): Promise<T> {
    if (this.retired()) return never<T>();
    return call().catch((err: unknown) => (this.retired() ? never<T>() : Promise.reject(err as Error)));
  }

  send(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<void> {
    return this.guard(() => this.ipc.send(dst, msg, opts));
  }
  receive(src: Endpoint, opts?: CallOptions): Promise<Message> {
    return this.guard(() => this.ipc.receive(src, opts));
  }
  sendrec(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.guard(() => this.ipc.sendrec(dst, msg, opts));
  }
  receiveRequest(opts?: CallOptions): Promise<Message> {
    return this.guard(() => this.ipc.receiveRequest(opts));
  }
  reply(dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    return this.guard(() => this.ipc.reply(dst, msg));
  }
  replyAndReceive(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.guard(() => this.ipc.replyAndReceive(dst, msg, opts));
  }
  notify(dst: Endpoint, opts?: NotifyOptions): Promise<NotifyOutcome> {
    return this.guard(() => this.ipc.notify(dst, opts));
  }
  grant(buffer: Uint8Array, opts: GrantOptions): number {
    return this.ipc.grant(buffer, opts);
  }
  revoke(grant: number): void {
    this.ipc.revoke(grant);
  }
  copyFrom(src: GrantRef, into: Uint8Array, opts?: CopyFromOptions): Promise<number> {
    return this.guard(() => this.ipc.copyFrom(src, into, opts));
  }
  copyTo(dst: GrantRef, data: Uint8Array, opts?: CallOptions): Promise<number> {
    return this.guard(() => this.ipc.copyTo(dst, data, opts));
  }
  copy(src: GrantRef, dst: GrantRef, length: number, opts?: CallOptions): Promise<number> {
    return this.guard(() => this.ipc.copy(src, dst, length, opts));
  }
  unbind(): Promise<void> {
    return this.guard(() => this.ipc.unbind());
  }
}
