/**
 * A booted VOS's layout (docs/vos/boot.md): the slot each server holds in its DC and the node the
 * spec places it on, as units the node daemons start. Slots are fixed at boot, so clients and
 * servers find each other by slot wherever a server runs now; well-known servers get the
 * original's low slots unless the spec says otherwise. Pure.
 */
import { EndpointSpace } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { DcLimits } from '../ipc/limits.js';
import type { ServerOptions } from './spec-options.js';
import { placeVosSpec, type KnownServer, type VosReplicas, type VosServer, type VosShape, type VosSpec } from './spec.js';

/** The slots servers get when the spec gives none (systask has one task slot per node). */
export const WELL_KNOWN_SLOTS: Readonly<Record<Exclude<KnownServer, 'systask'>, number>> = Object.freeze({ pm: 0, fs: 1, ds: 2, rdisk: 3, nweb: 4 });
/** Other servers get the lowest free system slot from here. */
export const FIRST_CHOSEN_SLOT = 8;

/** One server instance of a VOS: what a node daemon starts. */
export interface VosUnit {
  /** Unique in the VOS: the server's name, with `@<node>` for a server on every node. */
  readonly key: string;
  readonly name: string;
  readonly server: KnownServer | 'custom';
  readonly module?: string;
  readonly shape: VosShape;
  readonly host?: string;
  /** The node the spec places it on. */
  readonly node: number;
  /** Whether another node takes it over while `node` is down: a server on every node belongs to its node. */
  readonly failover: boolean;
  /** Its slot in the DC (SYSTASK: its node's task slot, negative). */
  readonly slot: number;
  readonly options?: ServerOptions;
  /** A member of the server's replica group (one unit per member node, all on the group's slot). */
  readonly replicas?: VosReplicas;
  /** A replica group member's own endpoint slot. */
  readonly memberSlot?: number;
}

/** The slot-map key of the member endpoint of a replicated server's member on `node`. */
export function memberKey(s: Pick<VosServer, 'name'>, node: number): string {
  return `${s.name}~${node}`;
}

/** The slot-map key of a server on `node`. */
export function unitKey(s: VosServer, node: number): string {
  return s.node === 'each' ? `${s.name}@${node}` : s.name;
}

function invalid(dc: number, errors: string[]): DvsError {
  return new DvsError('EDVSINVAL', `DC ${dc}: cannot lay the VOS out:\n  ${errors.join('\n  ')}`, { details: { source: `DC ${dc}`, errors } });
}

/**
 * The slot of every server instance but SYSTASK's, keyed by unitKey: the spec's, else a well-known
 * one that is free, else the lowest free system slot from FIRST_CHOSEN_SLOT. EDVSINVAL (naming the
 * fields) when a slot is not a server slot of the DC or the DC has too few.
 */
export function assignSlots(spec: VosSpec, limits: DcLimits, nodes: readonly number[]): Record<string, number> {
  placeVosSpec(spec, nodes);
  const serverSlots = limits.nrSysProcs - limits.nrTasks;
  const errors: string[] = [];
  const taken = new Set<number>();
  const slots: Record<string, number> = {};
  spec.servers.forEach((s, i) => {
    if (s.slot === undefined) return;
    if (s.slot >= serverSlots) errors.push(`servers[${i}].slot: DC ${spec.dc} has server slots 0..${serverSlots - 1}, got ${s.slot}`);
    taken.add(s.slot);
    slots[s.name] = s.slot;
  });
  const members = [...new Set(nodes)].sort((a, b) => a - b);
  const wanted: { key: string; server: VosServer }[] = [];
  for (const s of spec.servers) {
    if (s.server === 'systask') continue;
    // Each member of a replica group has a system slot of its own, where the primary reaches it.
    for (const n of s.replicas?.nodes ?? []) wanted.push({ key: memberKey(s, n), server: s });
    if (s.slot !== undefined) continue;
    for (const n of s.node === 'each' ? members : [s.node]) wanted.push({ key: unitKey(s, n), server: s });
  }
  // Well-known servers first, so a custom one never takes PM's slot.
  for (const w of wanted) {
    const known = w.server.server === 'custom' ? undefined : WELL_KNOWN_SLOTS[w.server.server as Exclude<KnownServer, 'systask'>];
    if (known !== undefined && w.key === w.server.name && w.server.node !== 'each' && !taken.has(known) && known < serverSlots) {
      taken.add(known);
      slots[w.key] = known;
    }
  }
  let next = FIRST_CHOSEN_SLOT;
  for (const w of wanted) {
    if (slots[w.key] !== undefined) continue;
    while (taken.has(next)) next++;
    if (next >= serverSlots) {
      errors.push(`servers[${spec.servers.indexOf(w.server)}]: DC ${spec.dc} has no free server slot left for ${w.key} (server slots 0..${serverSlots - 1})`);
      continue;
    }
    taken.add(next);
    slots[w.key] = next;
  }
  if (errors.length > 0) throw invalid(spec.dc, errors);
  return slots;
}

/**
 * The server instances of a laid-out spec, node by node (ascending), in spec order. A server on
 * every node has no slot on a node that joined the DC after boot: it is left out there.
 */
export function vosUnits(spec: VosSpec, slots: Readonly<Record<string, number>>, limits: DcLimits, nodes: readonly number[]): VosUnit[] {
  const space = new EndpointSpace(limits);
  const out: VosUnit[] = [];
  for (const plan of placeVosSpec(spec, nodes)) {
    const servers = plan.kind === 'unikernel' ? plan.servers : [plan.server];
    for (const s of servers) {
      const key = unitKey(s, plan.node);
      const slot = s.server === 'systask' ? space.systask(plan.node) : slots[key];
      if (slot === undefined) continue;
      if (s.replicas !== undefined) {
        // A replica group: one member on each of its nodes, all serving the group's one slot.
        for (const n of s.replicas.nodes) {
          if (!nodes.includes(n)) continue;
          const memberSlot = slots[memberKey(s, n)];
          if (memberSlot === undefined) continue;
          out.push({ key: `${key}#${n}`, name: s.name, server: s.server, ...(s.module === undefined ? {} : { module: s.module }), shape: s.shape, node: n, failover: false, slot, memberSlot, ...(s.options === undefined ? {} : { options: s.options }), replicas: s.replicas });
        }
        continue;
      }
      out.push({
        key,
        name: s.name,
        server: s.server,
        ...(s.module === undefined ? {} : { module: s.module }),
        shape: s.shape,
        ...(s.host === undefined ? {} : { host: s.host }),
        node: plan.node,
        failover: s.node !== 'each',
        slot,
        ...(s.options === undefined ? {} : { options: s.options }),
      });
    }
  }
  return out;
}
