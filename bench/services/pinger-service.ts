/**
 * The `vos` bench suite's client server: asked `{n, peer}`, it makes n sendrecs to the server at
 * `peer` (the echo service, in the same shape), then n rounds of a bare promise ping-pong and n
 * sendrecs through a bare kernel of its own, all in its own process, and answers the µs per call
 * of each: server-to-server IPC beside its floors, measured where the server runs.
 */
import type { M3Ipc, Payload } from '../../src/ipc/index.js';
import { isNotification } from '../../src/ipc/index.js';
import type { Service } from '../../src/services/service.js';
import { kernelPingPong } from '../kernel-ping.js';
import { promisePingPong, usPerCall } from '../ping-pong.js';

export default function createService(): Service {
  return {
    async run(ipc: M3Ipc): Promise<void> {
      for (;;) {
        let m;
        try {
          m = await ipc.receiveRequest();
        } catch {
          return;
        }
        if (isNotification(m)) continue;
        const { n, peer } = m.payload as { n: number; peer: number };
        const msg = { type: 1, payload: 1 };
        let answer: Payload;
        try {
          const sendrecUs = await usPerCall(n, () => ipc.sendrec(peer, msg));
          const pp = promisePingPong();
          const promiseUs = await usPerCall(n, (i) => pp.call(i));
          pp.stop();
          const kp = kernelPingPong();
          const kernelUs = await usPerCall(n, (i) => kp.call(i));
          kp.stop();
          answer = { sendrecUs, promiseUs, kernelUs };
        } catch (err) {
          answer = { error: err instanceof Error ? err.message : String(err) };
        }
        await ipc.reply(m.source, { type: 0, payload: answer });
      }
    },
  };
}
