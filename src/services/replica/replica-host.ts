/**
 * The replica group members one node daemon runs (docs/replication.md), one per group and node,
 * started from a module's `createReplicatedService` export.
 */
import type { Directory } from '../../cluster/directory.js';
import type { CoordinationStore } from '../../cluster/store.js';
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import type { Kernel } from '../../kernel/kernel.js';
import type { Process } from '../../kernel/process.js';
import type { Logger } from '../../runtime/logger.js';
import { loadReplicatedFactory } from '../service-module.js';
import { ReplicaMember, type ReplicaMode, type ReplicaStatus } from './replica-member.js';
import { isReplicatedService } from './replicated-service.js';

export interface ReplicaHostOptions {
  readonly nodeId: number;
  readonly kernel: Kernel;
  readonly directory: Directory;
  readonly store: CoordinationStore;
  readonly bind: (dcid: number, opts: { slot?: number; name: string }) => Promise<Process>;
  readonly logger: Logger;
}

export interface GroupSpec {
  readonly module: string;
  readonly args: Payload;
  readonly slot: number;
  /** This member's own endpoint slot (a system slot). */
  readonly memberSlot: number;
  readonly name: string;
  readonly mode: ReplicaMode;
  readonly quorum?: number;
  readonly leaseMs?: number;
  readonly failoverMs?: number;
}

export interface HostedMember {
  readonly dcid: number;
  readonly slot: number;
  readonly name: string;
  readonly status: ReplicaStatus;
}

export const DEFAULT_LEASE_MS = 3000;
export const DEFAULT_FAILOVER_MS = 30_000;

const key = (dcid: number, slot: number): string => `${dcid}/${slot}`;

export class ReplicaHost {
  private readonly members = new Map<string, { readonly dcid: number; readonly spec: GroupSpec; readonly member: ReplicaMember }>();

  constructor(private readonly opts: ReplicaHostOptions) {}

  /** Starts this node's member of the group on `spec.slot` of `dcid`. */
  async start(dcid: number, spec: GroupSpec): Promise<ReplicaMember> {
    const k = key(dcid, spec.slot);
    if (this.members.has(k)) throw new DvsError('EDVSEXIST', `node ${this.opts.nodeId} already runs a member of group ${k}`);
    const service = await (await loadReplicatedFactory(spec.module))(spec.args);
    if (!isReplicatedService(service)) throw new DvsError('EDVSBADVALUE', `${spec.module}'s createReplicatedService did not return a replicated service`);
    const member = new ReplicaMember({
      nodeId: this.opts.nodeId,
      dcid,
      slot: spec.slot,
      memberSlot: spec.memberSlot,
      name: spec.name,
      mode: spec.mode,
      ...(spec.quorum === undefined ? {} : { quorum: spec.quorum }),
      leaseMs: spec.leaseMs ?? DEFAULT_LEASE_MS,
      failoverMs: spec.failoverMs ?? DEFAULT_FAILOVER_MS,
      service,
      kernel: this.opts.kernel,
      directory: this.opts.directory,
      store: this.opts.store,
      bind: this.opts.bind,
      logger: this.opts.logger,
    });
    this.members.set(k, { dcid, spec, member });
    try {
      await member.start();
    } catch (err) {
      this.members.delete(k);
      await member.stop().catch(() => undefined);
      throw err;
    }
    return member;
  }

  running(dcid: number, slot: number): boolean {
    return this.members.has(key(dcid, slot));
  }

  async stop(dcid: number, slot: number): Promise<void> {
    const m = this.members.get(key(dcid, slot));
    if (m === undefined) return;
    this.members.delete(key(dcid, slot));
    await m.member.stop();
  }

  list(): HostedMember[] {
    return [...this.members.values()].map((m) => ({ dcid: m.dcid, slot: m.spec.slot, name: m.spec.name, status: m.member.status() }));
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.members.values()].map((m) => this.stop(m.dcid, m.spec.slot)));
  }
}
