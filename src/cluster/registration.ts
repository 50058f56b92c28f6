/**
 * A node's registration in the directory: the first one at start, and after a lost lease (a store
 * outage, a long pause) registering again with backoff until it succeeds, however long the outage,
 * then whatever must follow (the node's endpoints published again). Its state and since when are
 * visible to operators.
 */
import { DvsError } from '../ipc/errors.js';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import { silentLogger, type Logger } from '../runtime/logger.js';
import type { Directory, NodeInfo, NodeRecord } from './directory.js';

export type RegistrationState = 'unregistered' | 'registering' | 'registered';

export interface RegistrationStatus {
  readonly state: RegistrationState;
  /** When the node entered this state (ISO 8601). */
  readonly since: string;
  /** Attempts made since the registration was last lost (0 while registered). */
  readonly attempts: number;
  /** Why the last attempt failed, while not registered. */
  readonly lastError?: string;
  readonly incarnation?: number;
}

export interface RegistrationOptions {
  readonly directory: Directory;
  /** What the node registers (its id, link address and meta). */
  readonly info: () => NodeInfo;
  readonly ttlMs: number;
  readonly clock: Clock;
  readonly logger?: Logger;
  /** Wall-clock time in ms for `since` (default Date.now; the simulator gives its own). */
  readonly wallClock?: () => number;
  /** First and largest delay between attempts after a lost lease. Default 100 ms and 5 s. */
  readonly retryMs?: { readonly first: number; readonly max: number };
  /** Runs after every registration that followed a lost one (e.g. publish the node's endpoints again). */
  readonly registeredAgain?: (record: NodeRecord) => Promise<void>;
  /** Told of every change of state. */
  readonly changed?: (status: RegistrationStatus) => void;
}

export class NodeRegistration {
  private readonly opts: RegistrationOptions;
  private readonly log: Logger;
  private state: RegistrationState = 'unregistered';
  private since: number;
  private attempts = 0;
  private lastError: string | undefined;
  private record: NodeRecord | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(opts: RegistrationOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.since = this.wall();
  }

  /** Registers the node once (taking over a live registration of the same id); throws when it cannot. */
  async register(): Promise<NodeRecord> {
    this.enter('registering');
    try {
      const record = await this.attempt();
      return record;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.enter('unregistered');
      throw err;
    }
  }

  /** The lease was lost: the cluster considers the node dead. Registers again until it succeeds. */
  leaseLost(error: DvsError): void {
    if (this.stopped) return;
    this.log.error({ err: error }, 'node lease lost; registering again');
    this.record = undefined;
    this.attempts = 0;
    this.lastError = error.message;
    this.enter('registering');
    this.schedule(0);
  }

  status(): RegistrationStatus {
    return {
      state: this.state,
      since: new Date(this.since).toISOString(),
      attempts: this.attempts,
      ...(this.state !== 'registered' && this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.record === undefined ? {} : { incarnation: this.record.incarnation }),
    };
  }

  /** No more attempts. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.opts.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = this.opts.clock.setTimer(ms, () => {
      this.timer = undefined;
      void this.retry();
    });
  }

  private async retry(): Promise<void> {
    if (this.stopped) return;
    try {
      const record = await this.attempt();
      this.log.info({ incarnation: record.incarnation, attempts: this.attempts }, 'node registered again');
      await this.opts.registeredAgain?.(record);
    } catch (err) {
      if (this.stopped) return;
      this.lastError = (err as Error).message;
      const retry = this.opts.retryMs ?? { first: 100, max: 5000 };
      const delay = Math.min(retry.max, retry.first * 2 ** Math.min(this.attempts - 1, 16));
      this.log.warn({ err: this.lastError, attempts: this.attempts, retryInMs: delay }, 'node registration failed; retrying');
      this.opts.changed?.(this.status());
      this.schedule(delay);
    }
  }

  private async attempt(): Promise<NodeRecord> {
    this.attempts++;
    const record = await this.opts.directory.registerNode(this.opts.info(), this.opts.ttlMs, { replace: true });
    if (this.stopped) throw new DvsError('EDVSSHUTDOWN', 'registration stopped');
    this.record = record;
    this.attempts = 0;
    this.lastError = undefined;
    this.enter('registered');
    return record;
  }

  private enter(state: RegistrationState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = this.wall();
    this.opts.changed?.(this.status());
  }

  private wall(): number {
    return (this.opts.wallClock ?? Date.now)();
  }
}
