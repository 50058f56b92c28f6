/**
 * Services as coroutines in this process, bound in its kernel: a daemon hosting service modules,
 * or a simulated node. Each is started from a factory named in a plain spec (a module path, a
 * registered name), so another node's host can start the same code when the service moves there.
 * Implements the agent's ServiceHosting for the endpoints it runs.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Handover } from '../kernel/mailbox.js';
import type { Process } from '../kernel/process.js';
import type { Logger } from '../runtime/logger.js';
import { silentLogger } from '../runtime/logger.js';
import type { IncomingIncarnation, PrepareRequest, ServiceHosting } from './migration-agent.js';
import type { Service, ServiceFactory } from './service.js';
import { ServiceRunner } from './service-runner.js';

/** How a coroutine service is started: its factory's name, the factory's arguments, the endpoint's name. */
export interface CoroutineSpec {
  readonly kind: 'coroutine';
  readonly factory: string;
  readonly args: Payload;
  readonly name: string;
}

export interface StartOptions {
  readonly factory: string;
  readonly args?: Payload;
  readonly slot?: number;
  readonly name?: string;
}

export interface CoroutineHostOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  /** The factory a spec names (a module's export, a registered name); EDVSNOENT when there is none. */
  readonly factory: (name: string) => ServiceFactory | Promise<ServiceFactory>;
  /** Binds a new endpoint for a service (a daemon claims it in the directory first). */
  readonly bind: (dcid: number, opts: { slot?: number; name?: string }) => Promise<Process>;
  readonly logger?: Logger;
}

/** One service running here: its endpoint's handle, its runner and how it was started. */
export interface HostedCoroutine {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly spec: CoroutineSpec;
  readonly runner: ServiceRunner;
  readonly process: Process;
}

export function isCoroutineSpec(spec: Payload): spec is Payload & CoroutineSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec) || spec instanceof Uint8Array) return false;
  const s = spec as Record<string, unknown>;
  return s.kind === 'coroutine' && typeof s.factory === 'string' && typeof s.name === 'string';
}

const key = (dcid: number, endpoint: Endpoint): string => `${dcid}:${endpoint}`;

export class CoroutineHost implements ServiceHosting {
  private readonly running = new Map<string, HostedCoroutine>();
  private readonly log: Logger;

  constructor(private readonly opts: CoroutineHostOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  /**
   * Starts a service on a new endpoint of `dcid`; with `bind`, on the endpoint it binds (an
   * instance of an instance group, whose endpoint is the group's).
   */
  async start(dcid: number, o: StartOptions, bind?: (name: string) => Process | Promise<Process>): Promise<HostedCoroutine> {
    const name = o.name ?? o.factory.slice(-32);
    const spec: CoroutineSpec = { kind: 'coroutine', factory: o.factory, args: o.args ?? null, name };
    const service = await this.create(spec);
    const process = bind !== undefined ? await bind(name) : await this.opts.bind(dcid, o.slot === undefined ? { name } : { slot: o.slot, name });
    return this.run(dcid, process, service, spec, false);
  }

  /** The services running here. */
  list(): HostedCoroutine[] {
    return [...this.running.values()];
  }

  get(dcid: number, endpoint: Endpoint): HostedCoroutine | undefined {
    return this.running.get(key(dcid, endpoint));
  }

  /** Stops a service here for good: its endpoint is unbound. */
  async stop(dcid: number, endpoint: Endpoint): Promise<void> {
    const h = this.running.get(key(dcid, endpoint));
    if (h === undefined) throw new DvsError('EDVSNOENT', `no service at endpoint ${endpoint} of DC ${dcid} on node ${this.opts.nodeId}`);
    this.running.delete(key(dcid, endpoint));
    await h.runner.stopGracefully();
    h.runner.retire();
    await h.process.unbind();
  }

  /** Stops every service (the host shuts down). */
  async stopAll(): Promise<void> {
    for (const h of [...this.running.values()]) await this.stop(h.dcid, h.endpoint).catch(() => undefined);
  }

  // ---------------------------------------------------------------- ServiceHosting

  owns(dcid: number, endpoint: Endpoint): boolean {
    return this.running.has(key(dcid, endpoint));
  }

  spec(dcid: number, endpoint: Endpoint): Payload | undefined {
    return this.running.get(key(dcid, endpoint))?.spec as Payload | undefined;
  }

  snapshot(dcid: number, endpoint: Endpoint): Promise<Uint8Array | undefined> {
    const h = this.running.get(key(dcid, endpoint));
    if (h === undefined) return Promise.reject(new DvsError('EDVSMIGRATE', `endpoint ${endpoint} is not a service of this host`));
    return h.runner.snapshot();
  }

  async prepare(req: PrepareRequest): Promise<IncomingIncarnation> {
    if (!isCoroutineSpec(req.spec)) throw new DvsError('EDVSBADVALUE', 'not a coroutine service spec');
    const spec: CoroutineSpec = { kind: 'coroutine', factory: req.spec.factory, args: req.spec.args, name: req.spec.name };
    const service = await this.create(spec);
    if (req.state !== undefined) {
      if (service.restore === undefined) throw new DvsError('EDVSMIGRATE', `service ${spec.factory} has state to restore but no restore hook`);
      await service.restore(req.state);
    }
    return {
      absorb: (h: Handover) => {
        const process = this.opts.kernel.absorb(h, { name: spec.name });
        this.run(h.dcid, process, service, spec, true);
      },
      abort: () => undefined,
    };
  }

  retire(dcid: number, endpoint: Endpoint): void {
    const h = this.running.get(key(dcid, endpoint));
    if (h === undefined) return;
    this.running.delete(key(dcid, endpoint));
    h.runner.retire();
  }

  // ----------------------------------------------------------------

  private async create(spec: CoroutineSpec): Promise<Service> {
    const factory = await this.opts.factory(spec.factory);
    const service = await factory(spec.args);
    if (typeof service !== 'object' || service === null || typeof service.run !== 'function') throw new DvsError('EDVSBADVALUE', `factory ${spec.factory} did not return a service (an object with run)`);
    return service;
  }

  private run(dcid: number, process: Process, service: Service, spec: CoroutineSpec, migrated: boolean): HostedCoroutine {
    const endpoint = process.endpoint;
    const runner = new ServiceRunner(process, service, {
      dcid,
      endpoint,
      node: this.opts.nodeId,
      migrated,
      onEnd: (err) => {
        if (this.running.get(key(dcid, endpoint))?.runner !== runner) return;
        this.running.delete(key(dcid, endpoint));
        if (err === undefined) this.log.info({ dcid, endpoint, factory: spec.factory }, 'service returned');
        else this.log.warn({ dcid, endpoint, factory: spec.factory, err: err instanceof Error ? err.message : String(err) }, 'service failed');
        if (process.bound) void process.unbind().catch(() => undefined);
      },
    });
    const h: HostedCoroutine = { dcid, endpoint, spec, runner, process };
    this.running.set(key(dcid, endpoint), h);
    runner.start();
    return h;
  }
}
