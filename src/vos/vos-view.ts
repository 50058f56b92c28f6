/**
 * A booted VOS as operators and clients see it (docs/vos/boot.md): each server with its slot, the
 * node the spec places it on, and, while it is bound, its endpoint and the node serving it now.
 * Read from the directory's cache alone.
 */
import type { Directory } from '../cluster/directory.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { readVosRecord, unitsOf } from './vos-record.js';

/** A server of a VOS as `dvs vos status` and the client library see it. */
export interface VosServerView {
  readonly key: string;
  readonly name: string;
  readonly server: string;
  readonly shape: string;
  readonly host?: string;
  /** The node the spec places it on. */
  readonly node: number;
  readonly slot: number;
  /** Its endpoint and the node serving it now, while it is bound. */
  readonly endpoint?: Endpoint;
  readonly at?: number;
}

export interface VosView {
  readonly dc: number;
  readonly source: string;
  readonly bootedAt: number;
  readonly servers: readonly VosServerView[];
}

/** The VOS of `dcid` with where its servers run now; EDVSNOENT without one. */
export function vosView(directory: Directory, dcid: number): VosView {
  const entry = directory.vosRecord(dcid);
  const dc = directory.dc(dcid);
  if (entry === undefined || dc === undefined) throw new DvsError('EDVSNOENT', `DC ${dcid} runs no VOS`, { details: { dcid } });
  const boot = readVosRecord(dcid, entry.value);
  const servers = unitsOf(boot, dc).map((u): VosServerView => {
    const rec = directory.endpointAt(dcid, u.slot);
    return {
      key: u.key,
      name: u.name,
      server: u.server,
      shape: u.shape,
      ...(u.host === undefined ? {} : { host: u.host }),
      node: u.node,
      slot: u.slot,
      ...(rec === undefined ? {} : { endpoint: rec.endpoint, at: rec.node }),
    };
  });
  return { dc: dcid, source: boot.record.source, bootedAt: boot.record.bootedAt, servers };
}
