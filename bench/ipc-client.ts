/**
 * A DVS client OS process for the `ipc` bench suite, connected to its node daemon through the
 * client library (src/client):
 *   node --expose-gc ipc-client.js '{"socket": "<dataDir>/dvsd.sock", "token": "<dataDir>/token"}'
 * Prints `{"event":"ready"}` once connected, then obeys the commands of bench/worker.ts: `echo`
 * (serve requests at a slot), `sendrec` (timed loop), the two ends of a bulk copy, `allocStart` /
 * `allocStop`, `stop`.
 */
import { connect } from '../src/client/index.js';
import { AllocMeter, bulkHandlers, emit, exitWorker, num, serveCommands, serveEcho, timedSendrecs, type Args, RoleCache } from './worker.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as { socket: string; token: string; name?: string };
const client = await connect({ socketPath: opts.socket, tokenPath: opts.token, name: opts.name ?? 'bench-client' });
const roles = new RoleCache((dcid, opts) => client.bind(dcid, opts));
const meter = new AllocMeter();


const handlers: Record<string, (a: Args) => unknown> = {
  echo: async (a) => {
    const p = await roles.get(`echo${num(a, 'slot')}`, num(a, 'dcid'), num(a, 'slot'));
    serveEcho(p);
    return p.endpoint;
  },
  sendrec: async (a) => {
    const p = await roles.get('client', num(a, 'dcid'));
    return timedSendrecs(p, num(a, 'dst'), { type: 7, payload: a.payload as number }, num(a, 'n'));
  },
  ...bulkHandlers(roles),
  waitForBind: async (a) => client.waitForBind(num(a, 'dcid'), num(a, 'endpoint'), { timeoutMs: num(a, 'timeoutMs', 10_000) }),
  cpu: () => process.cpuUsage(),
  allocStart: () => meter.start(),
  allocStop: () => meter.stop(),
  stop: async () => {
    await client.close();
    setImmediate(exitWorker);
    return null;
  },
};

serveCommands(handlers, () => client.close());
emit({ event: 'ready', pid: process.pid, node: client.info.nodeId });
