/**
 * Whether the endpoint a name maps to is gone, asked without disturbing it. Two ways:
 * - the reply probe, over M3-IPC alone (any shape): `reply` to a peer that is not blocked in
 *   sendrec with us delivers nothing and fails, and how it fails says whether the peer exists
 *   (EDVSPROCSTS: alive, not waiting) or not (EDVSDSTDIED, a stale generation: gone). DS only
 *   probes endpoints it owes no reply to, so the probe never reaches anyone;
 * - the kernel's route table, when DS runs in the host that owns the kernel (no call at all).
 * Both see what this node's kernel knows: an endpoint whose death has not reached this node yet
 * still looks alive (its callers then get EDVSDSTDIED on use), and one this node has never heard of
 * (EDVSNOTBIND) is given the benefit of the doubt.
 */
import type { M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { isDvsError } from '../../ipc/errors.js';
import type { Kernel } from '../../kernel/kernel.js';
import { PROBE_REPLY } from './ds-messages.js';

/** True unless the endpoint is known to be gone. */
export type Liveness = (ipc: M3Ipc, endpoint: Endpoint) => boolean | Promise<boolean>;

/** The errors that say an endpoint is gone for good: died, replaced by a newer generation, or outside the DC. */
function meansGone(err: unknown): boolean {
  return isDvsError(err, 'EDVSDSTDIED') || isDvsError(err, 'EDVSENDPOINT') || isDvsError(err, 'EDVSRANGE');
}

/** The probe over M3-IPC; the default. */
export const replyProbe: Liveness = async (ipc, endpoint) => {
  try {
    await ipc.reply(endpoint, PROBE_REPLY);
    // Only a peer blocked in sendrec with DS takes a reply, and DS never probes one: alive anyway.
    return true;
  } catch (err) {
    return !meansGone(err);
  }
};

/** The route table of the kernel DS is bound in (unikernel host): no IPC at all. */
export function kernelLiveness(kernel: Kernel, dcid: number): Liveness {
  return (_ipc, endpoint) => {
    try {
      kernel.route(dcid, endpoint);
      return true;
    } catch (err) {
      return !meansGone(err);
    }
  };
}

/** Every holder counts as alive: lookups may return stale endpoints, `replace` takes a name over. */
export const assumeAlive: Liveness = () => true;
