/**
 * Moving programs the daemon runs (`dvs run`): the migration agent's hosting for endpoints bound by
 * a supervised program. Its state comes from the program itself (the process protocol's snapshot
 * request, docs/protocol.md "Migration"); on the target the same program is started from its spec
 * with DVS_SLOT set to the endpoint's slot, and its bind of that slot is held until the mailbox
 * arrives, then answered with the endpoint absorbed and the state to restore (`restored`,
 * `migrated`). The old program gets the `moved` event and is retired.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Handover } from '../kernel/mailbox.js';
import type { Process } from '../kernel/process.js';
import type { Logger } from '../runtime/logger.js';
import type { IncomingIncarnation, PrepareRequest } from '../services/migration-agent.js';
import type { RunSpec } from '../transport/run-spec.js';
import type { HostingPart } from './node-services.js';
import type { BindHookOptions, BoundForClient } from './proc-context.js';
import type { ProcServer } from './proc-server.js';
import type { Supervisor } from './supervisor.js';

/** How a program under the supervisor is started elsewhere. */
export interface RunMoveSpec {
  readonly kind: 'run';
  readonly spec: RunSpec;
}

/** How long a restarted program has to bind its slot. */
const BIND_WAIT_MS = 20_000;

function isRunMoveSpec(spec: Payload): spec is Payload & RunMoveSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec) || spec instanceof Uint8Array) return false;
  const s = spec as Record<string, unknown>;
  const r = s.spec as Record<string, unknown> | undefined;
  return s.kind === 'run' && typeof r === 'object' && r !== null && typeof r.program === 'string' && Array.isArray(r.args) && Number.isSafeInteger(r.dcid);
}

/** A program started for a move, waiting for its bind and then for the mailbox. */
interface Arrival {
  readonly mid: string;
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly slot: number;
  readonly state: Uint8Array | undefined;
  readonly name: string;
  run: number | undefined;
  /** Resolves prepare once the program asked for its slot. */
  onBind: (() => void) | undefined;
  /** The held bind: answered at absorb, failed at abort. */
  bound: { resolve: (b: BoundForClient) => void; reject: (e: DvsError) => void } | undefined;
}

export interface RunHostingOptions {
  readonly kernel: Kernel;
  readonly supervisor: Supervisor;
  readonly procServer: () => ProcServer;
  readonly logger: Logger;
}

export class RunHosting implements HostingPart {
  private readonly arrivals = new Map<string, Arrival>();

  constructor(private readonly opts: RunHostingOptions) {}

  owns(dcid: number, endpoint: Endpoint): boolean {
    return this.opts.supervisor.runOfEndpoint(dcid, endpoint) !== undefined;
  }

  accepts(spec: Payload): boolean {
    return isRunMoveSpec(spec);
  }

  spec(dcid: number, endpoint: Endpoint): Payload | undefined {
    const run = this.opts.supervisor.runOfEndpoint(dcid, endpoint);
    const spec = run === undefined ? undefined : this.opts.supervisor.specOf(run);
    if (spec === undefined) return undefined;
    const name = this.opts.kernel.procs(dcid).find((p) => p.endpoint === endpoint)?.name;
    const moved: RunSpec = { ...spec, dcid, slot: this.opts.kernel.slotOf(dcid, endpoint), ...(name === undefined ? {} : { name }) };
    return { kind: 'run', spec: moved } as unknown as Payload;
  }

  snapshot(dcid: number, endpoint: Endpoint, timeoutMs: number): Promise<Uint8Array | undefined> {
    const conn = this.opts.procServer().connectionOf(dcid, endpoint);
    if (conn === undefined) return Promise.reject(new DvsError('EDVSMIGRATE', `no connection holds endpoint ${endpoint}`));
    return conn.requestSnapshot(dcid, endpoint, Math.max(1, Math.floor(timeoutMs)));
  }

  async prepare(req: PrepareRequest): Promise<IncomingIncarnation> {
    if (!isRunMoveSpec(req.spec)) throw new DvsError('EDVSBADVALUE', 'not a program spec');
    const spec = req.spec.spec;
    const slot = this.opts.kernel.slotOf(req.dcid, req.endpoint);
    const key = `${req.dcid}:${slot}`;
    if (this.arrivals.has(key)) throw new DvsError('EDVSBUSY', `slot ${slot} of DC ${req.dcid} is already arriving here`);
    const a: Arrival = { mid: req.mid, dcid: req.dcid, endpoint: req.endpoint, slot, state: req.state, name: spec.name ?? `ep${slot}`, run: undefined, onBind: undefined, bound: undefined };
    this.arrivals.set(key, a);
    const asked = new Promise<void>((resolve) => (a.onBind = resolve));
    try {
      const info = await this.opts.supervisor.start({ ...spec, dcid: req.dcid, slot }, { DVS_MIGRATION: req.mid });
      a.run = info.run;
      await withTimeout(asked, BIND_WAIT_MS, () => new DvsError('EDVSTIMEDOUT', `the program started for endpoint ${req.endpoint} did not bind slot ${slot} within ${BIND_WAIT_MS} ms`));
    } catch (err) {
      this.discard(a, err instanceof DvsError ? err : new DvsError('EDVSIO', String(err)));
      throw err;
    }
    return {
      absorb: (h: Handover) => {
        const bound = a.bound;
        this.arrivals.delete(key);
        const process: Process = this.opts.kernel.absorb(h, { name: a.name });
        if (bound === undefined) throw new DvsError('EDVSNOTCONN', 'the program left before its endpoint arrived');
        bound.resolve({ process, ...(a.state === undefined ? {} : { restored: a.state }), migrated: true });
      },
      abort: (reason) => this.discard(a, reason),
    };
  }

  retire(dcid: number, endpoint: Endpoint, toNode: number, epoch: number): void {
    const sup = this.opts.supervisor;
    const run = sup.runOfEndpoint(dcid, endpoint);
    const conn = this.opts.procServer().connectionOf(dcid, endpoint);
    conn?.endpointMoved(dcid, endpoint, toNode, epoch);
    // The program goes once none of its endpoints is left here.
    if (run !== undefined && sup.get(run)?.endpoints.length === 0) void sup.retire(run).catch(() => undefined);
  }

  /**
   * The daemon's bind hook comes here first: a bind of a slot arriving here, from the program
   * started for it, is held until the endpoint arrives. Undefined for every other bind.
   */
  bind(dcid: number, o: BindHookOptions): Promise<BoundForClient> | undefined {
    const slot = o.slot ?? (o.endpoint === undefined ? undefined : this.opts.kernel.slotOf(dcid, o.endpoint));
    if (slot === undefined) return undefined;
    const a = this.arrivals.get(`${dcid}:${slot}`);
    if (a === undefined || a.run === undefined || o.run !== a.run || a.bound !== undefined) return undefined;
    return new Promise<BoundForClient>((resolve, reject) => {
      a.bound = { resolve, reject };
      o.signal.addEventListener('abort', () => reject(new DvsError('EDVSINTR', 'the bind was abandoned')), { once: true });
      a.onBind?.();
    });
  }

  private discard(a: Arrival, reason: DvsError): void {
    const key = `${a.dcid}:${a.slot}`;
    if (this.arrivals.get(key) === a) this.arrivals.delete(key);
    a.bound?.reject(new DvsError('EDVSMIGRATE', `the move of endpoint ${a.endpoint} failed: ${reason.message}`));
    if (a.run !== undefined) void this.opts.supervisor.stop(a.run, 'SIGKILL', 0).catch(() => undefined);
    this.opts.logger.info({ mid: a.mid, endpoint: a.endpoint, run: a.run, err: reason.message }, 'program started for a move discarded');
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, err: () => DvsError): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(err()), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e as Error);
      },
    );
  });
}
