/**
 * The `bind` request: a new endpoint for the connection, bound by the daemon's bind hook (which may
 * claim it in the cluster directory first, asynchronously) or by the kernel itself. An endpoint
 * whose bind completes after the connection closed is unbound at once.
 */
import { EndpointSpace } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Process } from '../kernel/process.js';
import { optInt, optString, type BindResult, type Fields } from '../transport/proc-protocol.js';
import { dcidOf, type OpHost } from './proc-op-host.js';

const NAME_FIELD_MAX = 256;

export function bindForClient(c: OpHost, f: Fields, id: number): BindResult | Promise<BindResult> {
  const dcid = dcidOf(c, f);
  const slot = optInt(f, 'slot');
  const endpoint = optInt(f, 'endpoint');
  const name = optString(f, 'name', NAME_FIELD_MAX);
  c.bound.checkRoom();
  const opts = { ...(slot === undefined ? {} : { slot }), ...(endpoint === undefined ? {} : { endpoint }), ...(name === undefined ? {} : { name }) };
  const hook = c.ctx.bind;
  if (hook === undefined) return adopt(c, dcid, c.ctx.kernel.bind(dcid, opts));
  const bound = hook(dcid, opts);
  if (!(bound instanceof Promise)) return adopt(c, dcid, bound);
  c.bound.bindsInFlight++;
  return c.tracked(id, bound).then(
    (p) => {
      c.bound.bindsInFlight--;
      return adopt(c, dcid, p);
    },
    (err: unknown) => {
      c.bound.bindsInFlight--;
      throw err;
    },
  );
}

/** Takes charge of a freshly bound process; one bound after the connection closed is unbound at once. */
function adopt(c: OpHost, dcid: number, p: Process): BindResult {
  const k = c.ctx.kernel;
  if (c.released) {
    try {
      if (p.bound) k.unbind(p.dcid, p.endpoint);
    } catch {
      // Already gone.
    }
    throw new DvsError('EDVSSHUTDOWN', 'the connection closed while binding');
  }
  c.bound.add(p);
  const space = new EndpointSpace(k.dcInfo(dcid).limits);
  const s = space.slotOf(p.endpoint);
  c.ctx.logger.debug({ conn: c.id, dcid, endpoint: p.endpoint, name: p.name }, 'process bound');
  return { dcid, endpoint: p.endpoint, slot: s, generation: space.generationOf(p.endpoint), name: p.name, system: space.isSystemSlot(s) };
}
