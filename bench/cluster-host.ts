/**
 * A real DVS node daemon in its own OS process, driven by the `cluster` bench suite:
 *   node cluster-host.js '<node config JSON>'
 * Like bench/node-host.ts (same line-delimited JSON protocol, bench/worker.ts), with the commands
 * the cluster suite needs: timed binds, when this node's directory cache (and so its kernel) first
 * saw an endpoint or lost a node, and a sendrec parked on a server that never answers it, to time
 * how long the caller waits once the server's node dies.
 *
 * Times are wall-clock milliseconds with sub-millisecond resolution (performance.timeOrigin +
 * performance.now()), comparable between the processes of one machine.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { Message } from '../src/ipc/message.js';
import type { Process } from '../src/kernel/index.js';
import { parseNodeConfig } from '../src/node/config.js';
import { Daemon } from '../src/node/daemon.js';
import { emit, exitWorker, num, serveCommands, timedSendrecs, type Args, RoleCache } from './worker.js';

/** Message types the `serve` endpoints understand: PING is answered at once, HOLD never. */
export const PING = 1;
export const HOLD = 2;

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]);
}

const config = parseNodeConfig(JSON.parse(process.argv[2] ?? '{}'));
const logger = pino({ level: config.logLevel, base: { node: config.nodeId } }, pino.destination(2));
const daemon = await Daemon.start(config, { logger });
const directory = daemon.clusterDirectory;

/** When this node's directory cache first announced each endpoint as bound (`dcid/endpoint`). */
const firstSeen = new Map<string, number>();
/** Nodes this node's directory saw go (node key deleted: lease expired or revoked). */
const nodeDowns: { node: number; incarnation: number; at: number }[] = [];
// Registered after the daemon's own listeners, so the kernel already holds the descriptor when these run.
directory.on('endpoint', (e) => {
  if (e.type !== 'bound') return;
  const key = `${e.endpoint.dcid}/${e.endpoint.endpoint}`;
  if (!firstSeen.has(key)) firstSeen.set(key, now());
});
directory.on('node', (e) => {
  if (e.type === 'down') nodeDowns.push({ node: e.node.nodeId, incarnation: e.node.incarnation, at: now() });
});

const roles = new RoleCache((dcid, opts) => daemon.bind(dcid, opts));
/** Endpoints bound by `bindTimed`, to unbind later. */
const bound = new Map<number, Process>();
let held = 0;
let parked: Promise<{ code: string; at: number }> | undefined;


/** Answers every request with its own payload, except HOLD requests, which it keeps unanswered. */
function serve(p: Process): void {
  void (async () => {
    for (;;) {
      let m: Message;
      try {
        m = await p.receiveRequest();
      } catch {
        return; // unbound
      }
      if (m.type === HOLD) {
        held++;
        continue;
      }
      await p.reply(m.source, { type: PING, payload: m.payload }).catch(() => undefined);
    }
  })();
}

const handlers: Record<string, (a: Args) => unknown> = {
  info: () => ({ ...daemon.info, directoryIncarnation: directory.node(config.nodeId)?.incarnation, lease: directory.node(config.nodeId)?.lease }),
  createDc: async (a) => directory.createDc({ dcid: num(a, 'dcid'), name: 'bench', nodes: a.nodes as number[] }),
  waitForDc: async (a) => daemon.waitForDc(num(a, 'dcid'), num(a, 'timeoutMs', 10_000)),
  waitForBind: async (a) => daemon.kernel.waitForBind(num(a, 'dcid'), num(a, 'endpoint'), { timeoutMs: num(a, 'timeoutMs', 10_000) }),
  /** Node ids this node's directory lists. */
  nodes: () => directory.nodes().map((n) => n.nodeId),

  /** Binds a server endpoint at `slot` that answers PING and holds HOLD requests. */
  serve: async (a) => {
    const p = await roles.get(`serve${num(a, 'slot')}`, num(a, 'dcid'), num(a, 'slot'));
    serve(p);
    return p.endpoint;
  },
  held: () => held,

  /** n timed sendrecs from a daemon-hosted client endpoint (as node-host's `sendrec`). */
  sendrec: async (a) => {
    const p = await roles.get('client', num(a, 'dcid'));
    return timedSendrecs(p, num(a, 'dst'), { type: PING, payload: a.payload as number }, num(a, 'n'));
  },
  /** PING `dst` until one answers (the link to its node is up), at most `timeoutMs`; the attempts taken. */
  ping: async (a) => {
    const p = await roles.get('client', num(a, 'dcid'));
    const deadline = now() + num(a, 'timeoutMs', 15_000);
    for (let attempt = 1; ; attempt++) {
      try {
        await p.sendrec(num(a, 'dst'), { type: PING, payload: 0 }, { timeoutMs: 1000 });
        return attempt;
      } catch (err) {
        if (now() > deadline) throw err;
        await sleep(20);
      }
    }
  },
  /** Starts a HOLD sendrec to `dst` and returns at once; `parked` tells how and when it ended. */
  park: async (a) => {
    const p = await roles.get('client', num(a, 'dcid'));
    parked = p.sendrec(num(a, 'dst'), { type: HOLD, payload: 0 }).then(
      () => ({ code: 'OK', at: now() }),
      (err: unknown) => ({ code: codeOf(err), at: now() }),
    );
    return null;
  },
  parked: async (a) => {
    if (parked === undefined) throw new Error('nothing parked');
    const r = await bounded(parked, num(a, 'timeoutMs', 30_000), 'parked sendrec');
    parked = undefined;
    return r;
  },
  /** When this node's directory dropped `node` (at or after `after`), waiting at most `timeoutMs`. */
  nodeDown: async (a) => {
    const node = num(a, 'node');
    const after = num(a, 'after');
    const deadline = now() + num(a, 'timeoutMs', 30_000);
    for (;;) {
      const hit = nodeDowns.find((d) => d.node === node && d.at >= after);
      if (hit !== undefined) return hit;
      if (now() > deadline) throw new Error(`node ${node} still listed after ${num(a, 'timeoutMs', 30_000)} ms`);
      await sleep(2);
    }
  },

  /** Binds an endpoint hosted here (a fixed slot when `slot` is given, else a user slot); when the call started and returned. */
  bindTimed: async (a) => {
    const dcid = num(a, 'dcid');
    const slot = a.slot === undefined ? undefined : num(a, 'slot');
    const t0 = now();
    const p = await daemon.bind(dcid, slot === undefined ? { name: 'bench-user' } : { slot, name: 'bench-fixed' });
    const t1 = now();
    bound.set(p.endpoint, p);
    return { endpoint: p.endpoint, t0, t1 };
  },
  /** Unbinds an endpoint of `bindTimed`, and waits until this node's directory no longer lists it. */
  unbind: async (a) => {
    const dcid = num(a, 'dcid');
    const endpoint = num(a, 'endpoint');
    const p = bound.get(endpoint);
    if (p === undefined) throw new Error(`endpoint ${endpoint} was not bound here`);
    bound.delete(endpoint);
    await p.unbind();
    const deadline = now() + num(a, 'timeoutMs', 10_000);
    while (directory.lookup(dcid, endpoint) !== undefined) {
      if (now() > deadline) throw new Error(`endpoint ${endpoint} still listed after unbind`);
      await sleep(2);
    }
    return null;
  },
  /** When this node's kernel first knew `endpoint` (its directory cache announced it), waiting at most `timeoutMs`. */
  known: async (a) => {
    const dcid = num(a, 'dcid');
    const endpoint = num(a, 'endpoint');
    await daemon.kernel.waitForBind(dcid, endpoint, { timeoutMs: num(a, 'timeoutMs', 10_000) });
    return firstSeen.get(`${dcid}/${endpoint}`) ?? now();
  },
  /** Waits until this node's directory has nothing at `slot` (a released endpoint is gone everywhere before the slot is claimed again). */
  slotFree: async (a) => {
    const dcid = num(a, 'dcid');
    const slot = num(a, 'slot');
    const deadline = now() + num(a, 'timeoutMs', 10_000);
    while (directory.endpointAt(dcid, slot) !== undefined) {
      if (now() > deadline) throw new Error(`slot ${slot} still bound after ${num(a, 'timeoutMs', 10_000)} ms`);
      await sleep(2);
    }
    return null;
  },

  cpu: () => process.cpuUsage(),

  stop: async () => {
    for (const p of [...roles.byName.values(), ...bound.values()]) await p.unbind().catch(() => undefined);
    await daemon.stop();
    setImmediate(exitWorker);
    return null;
  },
};

serveCommands(handlers, () => daemon.stop());
emit({ event: 'ready', pid: process.pid, info: handlers.info!({}) });
