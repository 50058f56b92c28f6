/**
 * The directory's key layout in the coordination store (docs/coordination.md, "Key layout"). Ids
 * and slots are written in decimal; slots of tasks are negative.
 *
 *   <root>/nodes/<node>                 {nodeId, host, port, incarnation, meta?}   under the node's lease
 *   <root>/incarnations/<node>          last incarnation number of the node         persistent
 *   <root>/dcs/<dcid>                   {dcid, name, nodes, limits}                 persistent
 *   <root>/dcs/<dcid>/eps/<slot>        {endpoint, generation, node, name, epoch}   under the owner's lease
 *   <root>/dcs/<dcid>/gen/<slot>        last generation handed out for the slot     persistent
 *   <root>/dcs/<dcid>/resv/<slot>       {node, generation}: a free user slot        under the node's lease
 *                                       reserved by a node's range, with the
 *                                       generation it will bind
 *   <root>/dcs/<dcid>/frz/<slot>        {endpoint, epoch, recordRevision, ms}:      under a lease of its own
 *                                       the endpoint is frozen at that epoch        (ms long)
 *   <root>/dcs/<dcid>/vos               the DC's VOS record (src/vos/vos-record.ts)  persistent
 *   <root>/dcs/<dcid>/inst/<slot>       {endpoint, name, nodes, module?, options?}:  persistent
 *                                       an instance group (docs/instances.md)
 */

export type ParsedKey =
  | { readonly kind: 'node'; readonly nodeId: number }
  | { readonly kind: 'incarnation'; readonly nodeId: number }
  | { readonly kind: 'dc' | 'vos'; readonly dcid: number }
  | { readonly kind: 'ep' | 'gen' | 'resv' | 'frz' | 'inst'; readonly dcid: number; readonly slot: number };

const INT = /^(0|-?[1-9][0-9]{0,8})$/;

function int(s: string | undefined): number | undefined {
  return s !== undefined && INT.test(s) ? Number(s) : undefined;
}

export class DirectoryKeys {
  /** Every directory key starts with this (root + '/'). */
  readonly prefix: string;

  constructor(readonly root = '/dvs') {
    this.prefix = `${root}/`;
  }

  node(nodeId: number): string {
    return `${this.root}/nodes/${nodeId}`;
  }

  incarnation(nodeId: number): string {
    return `${this.root}/incarnations/${nodeId}`;
  }

  dc(dcid: number): string {
    return `${this.root}/dcs/${dcid}`;
  }

  /** Prefix of everything that belongs to a DC besides its record. */
  dcTree(dcid: number): string {
    return `${this.root}/dcs/${dcid}/`;
  }

  endpoint(dcid: number, slot: number): string {
    return `${this.root}/dcs/${dcid}/eps/${slot}`;
  }

  generation(dcid: number, slot: number): string {
    return `${this.root}/dcs/${dcid}/gen/${slot}`;
  }

  reservation(dcid: number, slot: number): string {
    return `${this.root}/dcs/${dcid}/resv/${slot}`;
  }

  /** The freeze marker of a slot's endpoint. */
  freeze(dcid: number, slot: number): string {
    return `${this.root}/dcs/${dcid}/frz/${slot}`;
  }

  /** An instance group's record (docs/instances.md). */
  instances(dcid: number, slot: number): string {
    return `${this.root}/dcs/${dcid}/inst/${slot}`;
  }

  /** The DC's VOS record: opaque to the directory, read by the VOS layer. */
  vos(dcid: number): string {
    return `${this.root}/dcs/${dcid}/vos`;
  }

  /** What a key names, or undefined for keys outside the layout (ignored by the directory). */
  parse(key: string): ParsedKey | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const parts = key.slice(this.prefix.length).split('/');
    const [top, a, sub, b] = parts;
    if (parts.length === 2 && (top === 'nodes' || top === 'incarnations')) {
      const nodeId = int(a);
      if (nodeId === undefined || nodeId < 0) return undefined;
      return { kind: top === 'nodes' ? 'node' : 'incarnation', nodeId };
    }
    if (top !== 'dcs') return undefined;
    const dcid = int(a);
    if (dcid === undefined || dcid < 0) return undefined;
    if (parts.length === 2) return { kind: 'dc', dcid };
    if (parts.length === 3 && sub === 'vos') return { kind: 'vos', dcid };
    if (parts.length !== 4) return undefined;
    const slot = int(b);
    if (slot === undefined) return undefined;
    if (sub === 'eps') return { kind: 'ep', dcid, slot };
    if (sub === 'gen' || sub === 'resv' || sub === 'frz' || sub === 'inst') return { kind: sub, dcid, slot };
    return undefined;
  }
}
