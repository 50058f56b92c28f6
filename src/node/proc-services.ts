/**
 * The daemon's service and migration requests (docs/protocol.md, "Services and migration"): start
 * a coroutine service from a module, list them, and move any movable endpoint of the cluster to
 * another node, this daemon coordinating the move.
 */
import type { Payload } from '../ipc/payload.js';
import { optInt, optString, reqInt, reqString, type Fields } from '../transport/proc-protocol.js';
import type { InstanceHost } from './instance-host.js';
import type { NodeServices } from './node-services.js';
import { dcidOf } from './proc-op-host.js';
import { op, type Op } from './proc-ops.js';

const MODULE_PATH_MAX = 4096;
const NAME_MAX = 32;
const MAX_FREEZE_MS = 24 * 60 * 60 * 1000;

export function serviceOps(services: NodeServices, instances?: InstanceHost): ReadonlyMap<string, Op> {
  return new Map<string, Op>([
    // The instance groups this daemon knows, with its own instance's and kernel's counts (docs/instances.md).
    ['instances', op((_c, f: Fields) => instances?.list(optInt(f, 'dcid')) ?? [])],
    [
      'serve',
      op(async (c, f: Fields) => {
        const dcid = dcidOf(c, f);
        const module = reqString(f, 'module', MODULE_PATH_MAX);
        const slot = optInt(f, 'slot');
        const name = optString(f, 'name', NAME_MAX);
        const h = await services.serve(dcid, module, { ...(slot === undefined ? {} : { slot }), ...(name === undefined ? {} : { name }), args: (f.args ?? null) as Payload });
        return { dcid, endpoint: h.endpoint, name: h.spec.name, module };
      }),
    ],
    ['services', op(() => services.services())],
    [
      'migrate',
      op((c, f: Fields, id) => {
        const dcid = dcidOf(c, f);
        const endpoint = reqInt(f, 'endpoint');
        const to = reqInt(f, 'to', 0, 4095);
        const freezeMs = optInt(f, 'freezeMs', 10, MAX_FREEZE_MS);
        const quiesceMs = optInt(f, 'quiesceMs', 1, MAX_FREEZE_MS);
        return c.tracked(id, services.migrate(dcid, endpoint, to, { ...(freezeMs === undefined ? {} : { freezeMs }), ...(quiesceMs === undefined ? {} : { quiesceMs }) }));
      }),
    ],
  ]);
}
