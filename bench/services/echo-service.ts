/** The `vos` bench suite's server: answers every request at once with its payload. */
import type { M3Ipc } from '../../src/ipc/index.js';
import { isNotification } from '../../src/ipc/index.js';
import type { Service } from '../../src/services/service.js';

export default function createService(): Service {
  return {
    async run(ipc: M3Ipc): Promise<void> {
      for (;;) {
        let m;
        try {
          m = await ipc.receiveRequest();
        } catch {
          return; // unbound: the VOS stopped
        }
        if (!isNotification(m)) await ipc.reply(m.source, { type: 0, payload: m.payload });
      }
    },
  };
}
