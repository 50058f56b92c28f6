/**
 * The system servers a VOS spec names, as service modules (docs/migration.md §1): where each one's
 * code is, and the arguments its factory gets on a node. The same module runs as a coroutine in a
 * node daemon (unikernel) or in a process of its own (multiserver); custom servers are the
 * operator's modules.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DvsError } from '../ipc/errors.js';
import type { DcLimits } from '../ipc/limits.js';
import type { Payload } from '../ipc/payload.js';
import { WELL_KNOWN_SLOTS, type VosUnit } from './layout.js';
import type { VosLimits } from './spec.js';

/** The module of each server built so far, relative to this file. */
const MODULES: Readonly<Record<string, string>> = Object.freeze({
  systask: './systask/systask-server.js',
  pm: './pm/pm-server.js',
  ds: './ds/ds-server.js',
  rdisk: './rdisk/rdisk-server.js',
  fs: './fs/fs-server.js',
  nweb: './nweb/nweb-service.js',
});

/** The modules of the servers that can run as a replica group (their createReplicatedService). */
const REPLICATED_MODULES: Readonly<Record<string, string>> = Object.freeze({
  rdisk: './rdisk/rdisk-replica.js',
});

/** The absolute path of the module whose createReplicatedService serves a member of `unit`'s group. */
export function replicatedModule(unit: Pick<VosUnit, 'server' | 'module' | 'name'>): string {
  if (unit.server === 'custom') return serverModule(unit);
  const rel = REPLICATED_MODULES[unit.server];
  if (rel === undefined) throw new DvsError('EDVSNOSYS', `the ${unit.server} server cannot run as a replica group`, { details: { server: unit.server } });
  return fileURLToPath(new URL(rel, import.meta.url));
}

/** The absolute path of the module that serves `unit`; EDVSNOSYS for a server not built yet. */
export function serverModule(unit: Pick<VosUnit, 'server' | 'module' | 'name'>): string {
  if (unit.server === 'custom') {
    if (unit.module === undefined) throw new DvsError('EDVSINVAL', `custom server ${unit.name} names no module`);
    return unit.module;
  }
  const rel = MODULES[unit.server];
  if (rel === undefined) throw new DvsError('EDVSNOSYS', `the ${unit.server} server is not part of this DVS yet`, { details: { server: unit.server } });
  return fileURLToPath(new URL(rel, import.meta.url));
}

/** What a node tells its servers about their surroundings. */
export interface UnitContext {
  readonly dcid: number;
  /** The node the unit runs on now (a taken-over unit runs off its placed node). */
  readonly node: number;
  /** The DC's nodes. */
  readonly nodes: readonly number[];
  /** Where SYSTASK writes its processes' output. */
  readonly logDir: string;
  readonly limits?: VosLimits;
  /** The DC's endpoint space (PM finds SYSTASKs' endpoints by it). */
  readonly dcLimits: DcLimits;
  /** Environment every VOS process gets (how to reach the node's daemon). */
  readonly env: Readonly<Record<string, string>>;
  /** Prefix of the DC's cgroup names on this node: apart from other daemons sharing the host. */
  readonly containerPrefix: string;
  /** The VOS's slots, by unit key (servers find the servers they call by them). */
  readonly slots: Readonly<Record<string, number>>;
  /** The node's data directory (a relative RDISK image is in it). */
  readonly dataDir: string;
}

/** The slot of the `server` a unit on `node` calls: the one on its node, else the DC's one, else the well-known slot. */
function peerSlot(ctx: UnitContext, server: 'rdisk' | 'fs'): number {
  return ctx.slots[`${server}@${ctx.node}`] ?? ctx.slots[server] ?? WELL_KNOWN_SLOTS[server];
}

/** The factory arguments of `unit` (docs/vos/boot.md, "Server arguments"). */
export function serverArgs(unit: Pick<VosUnit, 'server' | 'options'>, ctx: UnitContext): Payload {
  switch (unit.server) {
    case 'systask':
      return { dcid: ctx.dcid, node: ctx.node, logDir: ctx.logDir, env: { ...ctx.env }, prefix: ctx.containerPrefix, ...(ctx.limits === undefined ? {} : { limits: { ...ctx.limits } }) };
    case 'pm':
      return { dcid: ctx.dcid, nodes: [...ctx.nodes], limits: { ...ctx.dcLimits } };
    case 'rdisk': {
      const image = String(unit.options?.image ?? '');
      return { ...unit.options, dcid: ctx.dcid, node: ctx.node, image: path.resolve(ctx.dataDir, image) };
    }
    case 'fs':
      return { ...unit.options, dcid: ctx.dcid, node: ctx.node, disk: peerSlot(ctx, 'rdisk'), limits: { ...ctx.dcLimits } };
    case 'nweb':
      return { ...unit.options, dcid: ctx.dcid, node: ctx.node, fs: peerSlot(ctx, 'fs'), limits: { ...ctx.dcLimits } };
    default:
      return { ...unit.options, dcid: ctx.dcid, node: ctx.node };
  }
}
