/**
 * The daemon's VOS request (docs/protocol.md, "The VOS"): where the servers of a DC's VOS are, so
 * the client library can reach PM and DS from any node.
 */
import type { Fields } from '../transport/proc-protocol.js';
import { dcidOf } from './proc-op-host.js';
import { op, type Op } from './proc-ops.js';
import type { VosManager } from './vos-manager.js';

export function vosOps(vos: VosManager): ReadonlyMap<string, Op> {
  return new Map<string, Op>([['vos', op((c, f: Fields) => vos.view(dcidOf(c, f)))]]);
}
