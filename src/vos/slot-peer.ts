/**
 * A server another server calls by its fixed slot (docs/vos/boot.md: slots are fixed at boot, the
 * generation is not). A call that fails EDVSENDPOINT met an older generation than the slot holds
 * now (the peer was bound again after a restart), so the caller follows to the next generation and
 * calls again, a bounded number of hops.
 */
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { isDvsError } from '../ipc/errors.js';
import { DEFAULT_DC_LIMITS, type DcLimits } from '../ipc/limits.js';

/** Most generations one call follows. */
export const MAX_GENERATION_HOPS = 64;

/** A server to call: its endpoint now, and a call that may follow it to a new one. */
export interface PeerRef {
  readonly endpoint: Endpoint;
  call<T>(call: (endpoint: Endpoint) => Promise<T>): Promise<T>;
}

/** A peer at one endpoint that never follows it (the caller looks it up again itself). */
export function fixedPeer(endpoint: Endpoint): PeerRef {
  return { endpoint, call: (call) => call(endpoint) };
}

export class SlotPeer implements PeerRef {
  private readonly space: EndpointSpace;
  private current: Endpoint;

  constructor(slot: number, limits: DcLimits = DEFAULT_DC_LIMITS, generation = 0) {
    this.space = new EndpointSpace(limits);
    this.current = this.space.make(generation, slot);
  }

  get endpoint(): Endpoint {
    return this.current;
  }

  /** `call(endpoint)`, following the slot's generations while it fails EDVSENDPOINT. */
  async call<T>(call: (endpoint: Endpoint) => Promise<T>): Promise<T> {
    for (let hop = 0; ; hop++) {
      const ep = this.current;
      try {
        return await call(ep);
      } catch (err) {
        if (!isDvsError(err, 'EDVSENDPOINT') || hop >= MAX_GENERATION_HOPS) throw err;
        // Another call may have moved on already.
        if (this.current === ep) this.current = this.space.make(this.space.generationOf(ep) + 1, this.space.slotOf(ep));
      }
    }
  }
}
