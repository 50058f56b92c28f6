/** The `vos` bench suite's server: answers every request at once with its payload. */
import type { M3Ipc } from '../../src/ipc/index.js';
import { isNotification } from '../../src/ipc/index.js';
import type { Service } from '../../src/services/service.js';

export default function createService(): Service {
  return {
    async run(ipc: M3Ipc): Promise<void> {
      // The answer and the next receive in one call (replyAndReceive), as a server loop should.
      let m;
      try {
        m = await ipc.receiveRequest();
        for (;;) {
          while (isNotification(m)) m = await ipc.receiveRequest();
          m = await ipc.replyAndReceive(m.source, { type: 0, payload: m.payload });
        }
      } catch {
        return; // unbound: the VOS stopped
      }
    },
  };
}
