/**
 * A real DVS node daemon in its own OS process, driven by the `migration` bench suite:
 *   node migration-host.js '<node config JSON>'
 * Like bench/node-host.ts (line-delimited JSON commands, bench/worker.ts). Services are started and
 * moved through the daemon's own process protocol (its Unix socket); this host adds what the suite
 * measures beside them: the two ends of a bulk copy between daemon-hosted endpoints, and a directory
 * freeze and thaw alone, the store round trips every move pays.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { Process } from '../src/kernel/index.js';
import { parseNodeConfig } from '../src/node/config.js';
import { Daemon } from '../src/node/daemon.js';
import { bulkHandlers, emit, exitWorker, num, serveCommands, type Args, RoleCache } from './worker.js';

const config = parseNodeConfig(JSON.parse(process.argv[2] ?? '{}'));
const logger = pino({ level: config.logLevel, base: { node: config.nodeId } }, pino.destination(2));
const daemon = await Daemon.start(config, { logger });
const directory = daemon.clusterDirectory;
const roles = new RoleCache<Process>((dcid, opts) => daemon.bind(dcid, opts));

const handlers: Record<string, (a: Args) => unknown> = {
  info: () => daemon.info,
  createDc: async (a) => directory.createDc({ dcid: num(a, 'dcid'), name: 'bench', nodes: a.nodes as number[] }),
  waitForDc: async (a) => daemon.waitForDc(num(a, 'dcid'), num(a, 'timeoutMs', 10_000)),
  waitForBind: async (a) => daemon.kernel.waitForBind(num(a, 'dcid'), num(a, 'endpoint'), { timeoutMs: num(a, 'timeoutMs', 10_000) }),

  /**
   * `n` rounds of freezing the endpoint bound here at `slot` in the directory and thawing it in
   * place, as a move's coordinator and target do: per round, ms for the freeze and for the thaw.
   */
  freezeThaw: async (a) => {
    const dcid = num(a, 'dcid');
    const p = await roles.get(`frozen${num(a, 'slot')}`, dcid, num(a, 'slot'));
    await daemon.kernel.waitForBind(dcid, p.endpoint, { timeoutMs: 10_000 });
    const rounds: { freezeMs: number; thawMs: number }[] = [];
    for (let i = 0; i < num(a, 'n'); i++) {
      const rec = directory.lookup(dcid, p.endpoint);
      if (rec === undefined) throw new Error(`endpoint ${p.endpoint} is not in this node's directory`);
      const t0 = performance.now();
      await directory.freezeEndpoint(dcid, p.endpoint, rec.epoch, 10_000);
      const t1 = performance.now();
      await directory.thawEndpoint(dcid, p.endpoint, rec.epoch);
      rounds.push({ freezeMs: t1 - t0, thawMs: performance.now() - t1 });
    }
    return rounds;
  },

  ...bulkHandlers(roles),

  stop: async () => {
    for (const p of roles.byName.values()) await p.unbind().catch(() => undefined);
    await daemon.stop();
    setImmediate(exitWorker);
    return null;
  },
};

serveCommands(handlers, () => daemon.stop());
emit({ event: 'ready', pid: process.pid, info: daemon.info });
