/**
 * A real DVS node daemon in its own OS process, driven by the `ipc` bench suite:
 *   node --expose-gc node-host.js '<node config JSON>'
 * Starts `Daemon` (logs on stderr), prints `{"event":"ready","info":{...}}` and then obeys the
 * commands of bench/worker.ts on stdin. Endpoints it hosts are coroutines inside the daemon:
 * echo servers, sinks, sendrec and pipelined-send loops, the two ends of a bulk copy.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { ANY } from '../src/ipc/index.js';
import type { Process } from '../src/kernel/index.js';
import { parseNodeConfig } from '../src/node/config.js';
import { Daemon } from '../src/node/daemon.js';
import { AllocMeter, bulkHandlers, emit, exitWorker, num, pipelinedSends, serveCommands, serveEcho, timedSendrecs, type Args, RoleCache } from './worker.js';

const config = parseNodeConfig(JSON.parse(process.argv[2] ?? '{}'));
const logger = pino({ level: config.logLevel, base: { node: config.nodeId } }, pino.destination(2));
const daemon = await Daemon.start(config, { logger });

/** Endpoints bound here for the bench's roles, by role name. */
const roles = new RoleCache((dcid, opts) => daemon.bind(dcid, opts));
const meter = new AllocMeter();
let sinkCount = 0;


/** Takes every message sent to it, counting them. */
function serveSink(p: Process): void {
  void (async () => {
    for (;;) {
      try {
        await p.receive(ANY);
      } catch {
        return;
      }
      sinkCount++;
    }
  })();
}

const handlers: Record<string, (a: Args) => unknown> = {
  info: () => daemon.info,
  createDc: async (a) => daemon.clusterDirectory.createDc({ dcid: num(a, 'dcid'), name: 'bench', nodes: a.nodes as number[] }),
  waitForDc: async (a) => daemon.waitForDc(num(a, 'dcid'), num(a, 'timeoutMs', 10_000)),
  waitForBind: async (a) => daemon.kernel.waitForBind(num(a, 'dcid'), num(a, 'endpoint'), { timeoutMs: num(a, 'timeoutMs', 10_000) }),

  echo: async (a) => {
    const p = await roles.get(`echo${num(a, 'slot')}`, num(a, 'dcid'), num(a, 'slot'));
    serveEcho(p);
    return p.endpoint;
  },
  sink: async (a) => {
    const p = await roles.get(`sink${num(a, 'slot')}`, num(a, 'dcid'), num(a, 'slot'));
    serveSink(p);
    return p.endpoint;
  },
  sinkCount: () => sinkCount,

  /** n timed sendrecs from a daemon-hosted client endpoint. */
  sendrec: async (a) => {
    const p = await roles.get('client', num(a, 'dcid'));
    return timedSendrecs(p, num(a, 'dst'), { type: 7, payload: a.payload as number }, num(a, 'n'));
  },

  /** `senders` daemon-hosted endpoints each keeping `window` sends in flight; n messages in all. */
  pipeline: async (a) => {
    const dcid = num(a, 'dcid');
    const dst = num(a, 'dst');
    const n = num(a, 'n');
    const senders = num(a, 'senders');
    const window = num(a, 'window');
    const procs: Process[] = [];
    for (let i = 0; i < senders; i++) procs.push(await roles.get(`sender${i}`, dcid));
    const msg = { type: 9, payload: a.payload as number };
    const t0 = performance.now();
    await Promise.all(procs.map((p, i) => pipelinedSends(p, dst, msg, Math.floor(n / senders) + (i < n % senders ? 1 : 0), window)));
    const ms = performance.now() - t0;
    return { msgsPerSec: (n / ms) * 1000, ms };
  },

  ...bulkHandlers(roles),

  cpu: () => process.cpuUsage(),
  allocStart: () => meter.start(),
  allocStop: () => meter.stop(),

  stop: async () => {
    for (const p of roles.byName.values()) await p.unbind().catch(() => undefined);
    await daemon.stop();
    setImmediate(exitWorker);
    return null;
  },
};

serveCommands(handlers, () => daemon.stop());
emit({ event: 'ready', pid: process.pid, info: daemon.info });
