/**
 * The services of one node daemon: coroutine services it hosts from ES modules, the migration
 * agent that moves any movable service of this node (docs/migration.md), and the hosting the agent
 * asks about an endpoint, which goes to whoever runs its code here (this daemon's coroutines, or a
 * program under the supervisor through its connection).
 */
import path from 'node:path';
import type { Directory } from '../cluster/directory.js';
import type { CoordinationStore } from '../cluster/store.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import type { Logger } from '../runtime/logger.js';
import { systemClock } from '../runtime/system-clock.js';
import { CoroutineHost, isCoroutineSpec, type HostedCoroutine } from '../services/coroutine-host.js';
import { MigrationAgent, type IncomingIncarnation, type MigrateOptions, type MigrationReport, type PrepareRequest, type ServiceHosting } from '../services/migration-agent.js';
import { ReplicaHost } from '../services/replica/replica-host.js';
import { loadServiceFactory } from '../services/service-module.js';

/** A hosting for endpoints this node runs in another way (programs under the supervisor). */
export interface HostingPart extends ServiceHosting {
  /** Whether this part runs the code bound at `endpoint`. */
  owns(dcid: number, endpoint: Endpoint): boolean;
  /** Whether this part can start code from `spec`. */
  accepts(spec: Payload): boolean;
}

export interface NodeServicesOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly bind: (dcid: number, opts: { slot?: number; name?: string }) => Promise<Process>;
  /** The coordination store (replica groups elect their primaries in it). */
  readonly store: CoordinationStore;
  readonly logger: Logger;
}

/** What a hosted coroutine service looks like to an operator. */
export interface ServiceRow {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly module: string;
}

export class NodeServices {
  readonly coroutines: CoroutineHost;
  readonly agent: MigrationAgent;
  readonly replicas: ReplicaHost;
  private readonly parts: HostingPart[] = [];

  constructor(opts: NodeServicesOptions) {
    this.coroutines = new CoroutineHost({
      nodeId: opts.nodeId,
      kernel: opts.kernel,
      factory: (module) => loadServiceFactory(module),
      bind: opts.bind,
      logger: opts.logger,
    });
    this.replicas = new ReplicaHost({ nodeId: opts.nodeId, kernel: opts.kernel, directory: opts.directory, store: opts.store, bind: opts.bind, logger: opts.logger });
    const hosting: ServiceHosting = {
      spec: (dcid, ep) => this.partOf(dcid, ep)?.spec(dcid, ep),
      snapshot: (dcid, ep, timeoutMs) => {
        const part = this.partOf(dcid, ep);
        return part === undefined ? Promise.reject(new DvsError('EDVSMIGRATE', `endpoint ${ep} is not a movable service`)) : part.snapshot(dcid, ep, timeoutMs);
      },
      prepare: (req: PrepareRequest): Promise<IncomingIncarnation> => {
        if (isCoroutineSpec(req.spec)) return this.coroutines.prepare(req);
        const part = this.parts.find((p) => p.accepts(req.spec));
        if (part === undefined) return Promise.reject(new DvsError('EDVSMIGRATE', `node ${opts.nodeId} cannot start a service from that spec`));
        return part.prepare(req);
      },
      retire: (dcid, ep, toNode, epoch) => this.partOf(dcid, ep)?.retire(dcid, ep, toNode, epoch),
    };
    this.agent = new MigrationAgent({ nodeId: opts.nodeId, kernel: opts.kernel, directory: opts.directory, hosting, clock: systemClock, logger: opts.logger });
    opts.kernel.onServiceFrame = (from, dcid, body, data) => this.agent.handle(from, dcid, body, data);
  }

  /** Another way of running services on this node (the supervisor's programs). */
  addHosting(part: HostingPart): void {
    this.parts.push(part);
  }

  /** Starts a coroutine service from the ES module at `module` (an absolute path; its default export, or `createService`, is the factory). */
  serve(dcid: number, module: string, opts: { slot?: number; name?: string; args?: Payload }): Promise<HostedCoroutine> {
    if (!path.isAbsolute(module)) return Promise.reject(new DvsError('EDVSINVAL', `a service module is named by an absolute path, got ${module}`));
    return this.coroutines.start(dcid, { factory: module, ...opts });
  }

  services(): ServiceRow[] {
    return this.coroutines.list().map((h) => ({ dcid: h.dcid, endpoint: h.endpoint, name: h.spec.name, module: h.spec.factory }));
  }

  migrate(dcid: number, endpoint: Endpoint, to: number, opts: MigrateOptions = {}): Promise<MigrationReport> {
    return this.agent.migrate(dcid, endpoint, to, opts);
  }

  nodeDown(node: number): void {
    this.agent.nodeDown(node);
  }

  async stop(): Promise<void> {
    await this.replicas.stopAll();
    await this.coroutines.stopAll();
  }

  private partOf(dcid: number, endpoint: Endpoint): ServiceHosting | undefined {
    if (this.coroutines.owns(dcid, endpoint)) return this.coroutines;
    return this.parts.find((p) => p.owns(dcid, endpoint));
  }
}
