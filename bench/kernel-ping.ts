/**
 * A bare in-process kernel (no daemon, no service runner): one echo process that answers with
 * replyAndReceive and one client. Measured inside a daemon, beside a server pair of the unikernel
 * shape, it is the floor that pair stands on: the same kernel calls in the same process.
 */
import { Kernel } from '../src/kernel/index.js';
import { systemClock } from '../src/runtime/system-clock.js';

export function kernelPingPong(): { call: (v: number) => Promise<unknown>; stop: () => void } {
  const kernel = new Kernel({ nodeId: 0, clock: systemClock });
  kernel.createDc({ dcid: 0 });
  const server = kernel.bind(0, { slot: 0, name: 'echo' });
  const client = kernel.bind(0, { name: 'client' });
  void (async () => {
    try {
      let m = await server.receiveRequest();
      for (;;) m = await server.replyAndReceive(m.source, { type: 1, payload: m.payload });
    } catch {
      return; // the kernel shut down
    }
  })();
  return {
    call: (v: number) => client.sendrec(server.endpoint, { type: 7, payload: v }),
    stop: () => kernel.shutdown(),
  };
}
