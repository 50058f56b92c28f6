/**
 * Suite `kernel`: the in-process kernel against a bare promise ping-pong between two async
 * functions, the floor for any rendezvous built on promises.
 */
import { ANY } from '../../src/ipc/index.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { compare, latency, latencySamples, opsPerSecond, percentile, throughput, type BenchResult, type Suite } from '../harness.js';

const SUITE = 'kernel';

/** Two async functions handing a value back and forth through promises: the baseline. */
function promisePingPong(): { call: (v: number) => Promise<number>; stop: () => void } {
  let serve: ((v: number) => void) | undefined;
  let answer: ((v: number) => void) | undefined;
  let running = true;
  void (async () => {
    while (running) {
      const v = await new Promise<number>((r) => (serve = r));
      answer!(v + 1);
    }
  })();
  return {
    call: (v: number) => {
      const p = new Promise<number>((r) => (answer = r));
      serve!(v);
      return p;
    },
    stop: () => {
      running = false;
      serve?.(0);
    },
  };
}

function echoServer(server: Process): void {
  void (async () => {
    for (;;) {
      let m;
      try {
        m = await server.receiveRequest();
      } catch {
        return; // unbound at the end of the run
      }
      await server.reply(m.source, { type: 1, payload: (m.payload as number) + 1 });
    }
  })();
}

function notifyPeer(me: Process, peer: number): void {
  void (async () => {
    for (;;) {
      try {
        await me.receive(ANY);
        await me.notify(peer);
      } catch {
        return;
      }
    }
  })();
}

export const kernelSuite: Suite = {
  name: SUITE,
  description: 'in-process sendrec and notify->receive against a bare promise ping-pong',
  async run({ scale }): Promise<BenchResult[]> {
    const n = Math.max(1000, Math.round(200_000 * scale));
    const rounds = 5;
    const kernel = new Kernel({ nodeId: 0, clock: systemClock });
    kernel.createDc({ dcid: 0 });
    const server = kernel.bind(0, { slot: 0, name: 'echo' });
    const client = kernel.bind(0, { name: 'client' });
    echoServer(server);
    const a = kernel.bind(0, { slot: 1, name: 'notifier-a' });
    const b = kernel.bind(0, { slot: 2, name: 'notifier-b' });
    notifyPeer(b, a.endpoint);
    await Promise.resolve();
    const pp = promisePingPong();
    await pp.call(0);

    const msg = { type: 7, payload: 1 };
    const sendrecLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await client.sendrec(0, msg);
    };
    const pingLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await pp.call(i);
    };
    // One notify->receive each way per iteration: a notifies b, b receives and notifies a, a receives.
    const notifyLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) {
        await a.notify(b.endpoint);
        await a.receive(ANY);
      }
    };

    const sr = await compare(rounds, () => opsPerSecond(n, sendrecLoop), () => opsPerSecond(n, pingLoop));
    const nt = await compare(rounds, () => opsPerSecond(n, notifyLoop), () => opsPerSecond(n, pingLoop));
    const srLat = await latencySamples(n, () => client.sendrec(0, msg));
    const ppLat = await latencySamples(n, () => pp.call(1));
    const ntLat = await latencySamples(n, async () => {
      await a.notify(b.endpoint);
      await a.receive(ANY);
    });

    pp.stop();
    kernel.shutdown();
    const note = { iterations: n, rounds };
    return [
      throughput(SUITE, 'sendrec round trip', sr.ours, sr.base, note),
      latency(SUITE, 'sendrec p50', percentile(srLat, 50), percentile(ppLat, 50)),
      latency(SUITE, 'sendrec p99', percentile(srLat, 99), percentile(ppLat, 99)),
      // A notify round is two notify->receive hops; report per hop.
      throughput(SUITE, 'notify->receive', nt.ours * 2, nt.base * 2, note),
      latency(SUITE, 'notify->receive p50', percentile(ntLat, 50) / 2, percentile(ppLat, 50) / 2),
      latency(SUITE, 'notify->receive p99', percentile(ntLat, 99) / 2, percentile(ppLat, 99) / 2),
    ];
  },
};
