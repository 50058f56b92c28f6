/** Introspection: the per-DC process table, as data and as the original's /proc/dvs/DCx/procs text. */
import { ANY, NONE, type Endpoint } from '../ipc/endpoint.js';
import type { DcState } from './dc.js';
import { RecvMode, type ProcCounters } from './proc.js';
import { ownerOf } from './routes.js';

/** rts_flags bits (reference §1.4). A process is runnable when none is set. */
export const RTS = {
  SENDING: 1 << 2,
  RECEIVING: 1 << 3,
  ONCOPY: 1 << 10,
  REMOTE: 1 << 12,
} as const;

/** misc_flags bits (reference §1.4). */
export const MISC = {
  NOTIFY: 1 << 2,
  WOKENUP: 1 << 9,
  ATOMIC: 1 << 13,
  /** The endpoint's route is frozen: it is moving (migration). */
  MIGRATING: 1 << 14,
} as const;

export interface ProcInfo {
  readonly dcid: number;
  readonly slot: number;
  readonly endpoint: Endpoint;
  readonly generation: number;
  readonly name: string;
  /** Node that owns the endpoint (a group's primary). */
  readonly node: number;
  readonly kind: 'local' | 'remote';
  /** Location epoch of the route (-1: learnt from traffic only). */
  readonly epoch: number;
  /** The route is frozen: the endpoint is moving, new calls to it park. */
  readonly frozen: boolean;
  readonly rtsFlags: number;
  readonly miscFlags: number;
  /** Flag names set in rtsFlags and miscFlags. */
  readonly flags: string[];
  /** Whom it receives from (ANY, an endpoint, NONE when not receiving). */
  readonly getfrom: Endpoint;
  /** Whom it is blocked sending to (NONE when not). */
  readonly sendto: Endpoint;
  readonly queued: number;
  readonly pendingNotifies: number;
  readonly grants: number;
  readonly counters: Readonly<ProcCounters>;
}

const ZERO: ProcCounters = Object.freeze({ lclSent: 0, rmtSent: 0, lclCopies: 0, rmtCopies: 0, received: 0 });

function flagNames(rts: number, misc: number): string[] {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(RTS)) if (rts & bit) names.push(name);
  for (const [name, bit] of Object.entries(MISC)) if (misc & bit) names.push(name);
  return names;
}

export function buildProcTable(dc: DcState, nodeId: number): ProcInfo[] {
  const rows: ProcInfo[] = [];
  for (const route of dc.routes.all()) {
    const base = { dcid: dc.dcid, slot: route.slot, endpoint: route.endpoint, generation: dc.space.generationOf(route.endpoint), name: route.name, epoch: route.epoch, frozen: route.kind === 'frozen' };
    const e = ownerOf(route);
    if (e === undefined) {
      const where = route.kind === 'frozen' ? route.previous : route;
      const node = where.kind === 'remote' ? where.node : where.kind === 'group' ? where.primary : nodeId;
      rows.push({ ...base, node, kind: 'remote', rtsFlags: RTS.REMOTE, miscFlags: 0, flags: ['REMOTE'], getfrom: NONE, sendto: NONE, queued: 0, pendingNotifies: 0, grants: 0, counters: ZERO });
      continue;
    }
    const w = e.recv;
    let rts = 0;
    let misc = 0;
    let getfrom: Endpoint = NONE;
    let sendto: Endpoint = e.sending > 0 ? e.sendto : NONE;
    if (e.sending > 0) rts |= RTS.SENDING;
    if (w !== undefined) {
      if (w.mode === RecvMode.SendrecSending) {
        rts |= RTS.SENDING;
        sendto = w.from;
      } else {
        rts |= RTS.RECEIVING;
        getfrom = w.mode === RecvMode.Request ? ANY : w.from;
      }
      if (w.mode === RecvMode.SendrecSending || w.mode === RecvMode.SendrecReply) misc |= MISC.ATOMIC;
    }
    if (e.copying) rts |= RTS.ONCOPY;
    if (e.mailbox.notifies !== undefined) misc |= MISC.NOTIFY;
    if (e.wokenUp) misc |= MISC.WOKENUP;
    if (route.kind === 'frozen') misc |= MISC.MIGRATING;
    rows.push({
      ...base,
      node: nodeId,
      kind: 'local',
      rtsFlags: rts,
      miscFlags: misc,
      flags: flagNames(rts, misc),
      getfrom,
      sendto,
      queued: e.mailbox.length,
      pendingNotifies: e.mailbox.notifies?.size ?? 0,
      grants: e.grants?.size ?? 0,
      counters: { ...e.counters },
    });
  }
  return rows;
}

function pad(v: string | number, width: number): string {
  return String(v).padStart(width);
}

/** Text like /proc/dvs/DCx/procs: one row per bound slot; flags in hex; magic values as numbers; a moving endpoint marked MIGRATING after its name. */
export function formatProcTable(rows: readonly ProcInfo[]): string {
  const head = `${pad('DC', 3)} ${pad('pnr', 5)} ${pad('-endp-', 8)} ${pad('nd', 3)} ${pad('flag', 5)} ${pad('misc', 5)} ${pad('-getf', 6)} ${pad('-sndt', 6)} ${pad('q', 3)} ${pad('lsnt', 6)} ${pad('rsnt', 6)} ${pad('lcpy', 5)} ${pad('rcpy', 5)} name`;
  const lines = rows.map(
    (r) =>
      `${pad(r.dcid, 3)} ${pad(r.slot, 5)} ${pad(r.endpoint, 8)} ${pad(r.node, 3)} ${pad(r.rtsFlags.toString(16), 5)} ${pad(r.miscFlags.toString(16), 5)} ${pad(r.getfrom, 6)} ${pad(r.sendto, 6)} ${pad(r.queued, 3)} ${pad(r.counters.lclSent, 6)} ${pad(r.counters.rmtSent, 6)} ${pad(r.counters.lclCopies, 5)} ${pad(r.counters.rmtCopies, 5)} ${r.name}${r.frozen ? ' MIGRATING' : ''}`,
  );
  return [head, ...lines].join('\n') + '\n';
}
