/**
 * Replica groups with real daemons (docs/replication.md): a replicated register on nodes 1 and 2
 * (node 0 serves the store and the clients), written continuously by clients on node 0 while the
 * primary's daemon is SIGKILLed, or SIGSTOPped and woken late. Every acknowledged write must
 * survive, the clients must see only a delay, and the whole history must be linearizable.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { spawnNode } from '../../src/cli/cluster.js';
import { replicas } from '../../src/cli/replicas-command.js';
import { vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import type { RemoteProcess } from '../../src/client/remote-process.js';
import { DvsError } from '../../src/ipc/errors.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';
import { checkRegisterHistory, type HistoryEntry, type RegisterOp } from '../support/linearizability.js';

const GROUPS = [
  { mode: 'passive', dc: 1, slot: 9 },
  { mode: 'active', dc: 2, slot: 10, quorum: 2 },
] as const;
let DC = 1;
let SLOT = 9;
// Built into dist by the suite's global setup (the bench's register, in its replicated form).
const REGISTER = fileURLToPath(new URL('../../dist/bench/services/register-service.js', import.meta.url));
const W = 30_000;
let tc: TestCluster;
const clients: DvsClient[] = [];

/** Errors a caller of a group sees while it fails over: the call is retried (same rid). */
const RETRY = new Set(['EDVSNOTCONN', 'EDVSDEADSRCDST', 'EDVSDSTDIED', 'EDVSSRCDIED', 'EDVSTIMEDOUT', 'EDVSNOTBIND', 'EDVSNONODE', 'EDVSSHUTDOWN', 'EDVSGRPLEADER', 'EDVSAGAIN']);

interface Group {
  readonly primary: number | undefined;
  readonly servedBy?: number;
  readonly synced: readonly number[];
  readonly candidates: readonly number[];
  readonly endpoint: number;
  readonly epoch: number;
}

async function group(): Promise<Group | undefined> {
  return (await replicas(tc.dir, DC, { timeoutMs: 5000 })).find((g) => g.slot === SLOT);
}

/** The group once its `members` stand, synchronised, and the entry is the primary's. */
function settled(members = 2): Promise<Group> {
  return eventually(async () => {
    const g = await group();
    return g !== undefined && g.candidates.length === members && g.synced.length === members && g.primary !== undefined && g.servedBy === g.primary ? g : undefined;
  }, W, 100);
}

/** Boots the group's VOS again with these member nodes (`dvs vos up --replace`). */
async function withMembers(nodes: number[]): Promise<void> {
  const spec = GROUPS.find((x) => x.dc === DC)!;
  const file = path.join(tc.dir, `vos-${DC}-${nodes.join('')}.json`);
  const replicas = { nodes, mode: spec.mode, leaseMs: 1000, failoverMs: 20_000, ...('quorum' in spec ? { quorum: Math.min(spec.quorum, nodes.length) } : {}) };
  await writeFile(file, JSON.stringify({ dc: DC, servers: [{ name: `custom:${REGISTER}`, node: 1, shape: 'unikernel', slot: SLOT, replicas }] }));
  await vosUp(tc.dir, file, { timeoutMs: W, replace: true });
}

/** A client that calls the register with retries, recording what it saw. */
class RegisterClient {
  private rid = 0;
  constructor(
    readonly id: number,
    private readonly p: RemoteProcess,
    private readonly endpoint: number,
    private readonly history: HistoryEntry[],
  ) {}

  async op(op: RegisterOp, deadline: number): Promise<{ result: number | null | boolean; retries: number } | undefined> {
    const rid = ++this.rid;
    const invokedAt = performance.now();
    const msg = op.kind === 'read' ? { type: 2, payload: {} } : op.kind === 'write' ? { type: 1, payload: { rid, value: op.value } } : { type: 3, payload: { rid, value: op.value, expect: op.expect } };
    for (let retries = 0; Date.now() < deadline && retries < 500; retries++) {
      try {
        const r = await this.p.sendrec(this.endpoint, msg, { timeoutMs: 5000 });
        const pl = r.payload as Record<string, unknown>;
        if (r.type !== 0) throw new Error(`register refused: ${JSON.stringify(pl)}`);
        const result = op.kind === 'read' ? (pl.value as number | null) : op.kind === 'cas' ? (pl.swapped as boolean) : null;
        this.history.push({ client: this.id, op, invokedAt, completedAt: performance.now(), ...(op.kind === 'write' ? {} : { result }) });
        return { result, retries };
      } catch (err) {
        if (!(err instanceof DvsError) || !RETRY.has(err.code)) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.history.push({ client: this.id, op, invokedAt });
    return undefined;
  }
}

async function registerClients(n: number, endpoint: number, history: HistoryEntry[]): Promise<RegisterClient[]> {
  const r = tc.runtime(0);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'rg-test' });
  clients.push(c);
  const out: RegisterClient[] = [];
  for (let i = 0; i < n; i++) out.push(new RegisterClient(clients.length * 100 + i, await c.bind(DC), endpoint, history));
  return out;
}

/** Each client writes unique values and reads, until `stop()`; returns what each acknowledged. */
function runLoad(cs: RegisterClient[], deadline: number): { stop: () => Promise<void>; acked: number[]; afterKill: () => number; markKill: () => void } {
  let running = true;
  const acked: number[] = [];
  let killAt: number | undefined;
  let after = 0;
  const loops = cs.map(async (c, i) => {
    for (let k = 0; running && k < 100_000; k++) {
      const value = (i + 1) * 1_000_000 + k;
      const r = k % 3 === 2 ? await c.op({ kind: 'read' }, deadline) : await c.op({ kind: 'write', value }, deadline);
      if (r !== undefined && k % 3 !== 2) acked.push(value);
      if (killAt !== undefined && r !== undefined) {
        after++;
      }
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
    acked,
    afterKill: () => after,
    markKill: () => {
      killAt = Date.now();
    },
  };
}

beforeAll(async () => {
  tc = await startCluster(3);
  for (const g of GROUPS) {
    await createDc(tc.dir, { dcid: g.dc, name: `replicas-${g.mode}`, nodes: [0, 1, 2] });
    const file = path.join(tc.dir, `vos-${g.dc}.json`);
    const replicas = { nodes: [1, 2], mode: g.mode, leaseMs: 1000, failoverMs: 20_000, ...('quorum' in g ? { quorum: g.quorum } : {}) };
    await writeFile(file, JSON.stringify({ dc: g.dc, servers: [{ name: `custom:${REGISTER}`, node: 1, shape: 'unikernel', slot: g.slot, replicas }] }));
    await vosUp(tc.dir, file, { timeoutMs: W });
  }
}, 90_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 60_000);

describe.each(GROUPS)('an $mode replica group of a register on two nodes', (spec) => {
  beforeAll(() => {
    DC = spec.dc;
    SLOT = spec.slot;
  });

  it('SIGKILL of the primary: the backup takes over, no acknowledged write is lost, the history is linearizable', { timeout: 120_000 }, async () => {
    const g = await settled();
    const history: HistoryEntry[] = [];
    const cs = await registerClients(3, g.endpoint, history);
    const load = runLoad(cs, Date.now() + 60_000);
    await eventually(() => (load.acked.length >= 60 ? true : undefined), W, 20);
    const victim = g.primary!;
    load.markKill();
    process.kill(tc.runtime(victim).pid, 'SIGKILL');
    await eventually(() => (load.afterKill() >= 60 ? true : undefined), 45_000, 50);
    await load.stop();
    const after = await eventually(async () => {
      const now = await group();
      return now !== undefined && now.epoch > g.epoch ? now : undefined;
    }, W, 100);
    expect(after?.primary).toBe(victim === 1 ? 2 : 1);
    expect(after?.servedBy).toBe(after?.primary);
    expect(after!.epoch).toBeGreaterThan(g.epoch);
    // Every op was answered (the clients saw a delay, no error), and the history is linearizable.
    expect(history.every((h) => h.completedAt !== undefined)).toBe(true);
    const check = checkRegisterHistory(history);
    expect(check.ok, check.explanation).toBe(true);
    // The last acknowledged write of any client is what a read returns now (nothing acknowledged was lost).
    const [reader] = await registerClients(1, g.endpoint, history);
    const last = await reader!.op({ kind: 'read' }, Date.now() + W);
    const lastAcked = history.filter((h) => h.op.kind === 'write' && h.completedAt !== undefined).sort((a, b) => b.completedAt! - a.completedAt!)[0]!;
    expect(last?.result).toBe((lastAcked.op as { value: number }).value);
    const worst = Math.max(...history.map((h) => h.completedAt! - h.invokedAt));
    console.log(`failover: the slowest call took ${worst.toFixed(0)} ms; ${history.length} ops`);

    // The killed node comes back and rejoins as a backup.
    const entry = tc.cluster.nodes.find((n) => n.nodeId === victim)!;
    await spawnNode(JSON.parse(await readFile(entry.configFile, 'utf8')) as Parameters<typeof spawnNode>[0]);
    const back = await settled();
    expect(back.primary).toBe(after?.primary);
    expect(back.synced).toContain(victim);
  });

  it('the member count changes while clients write: a third member joins, then leaves; the history stays linearizable', { timeout: 120_000 }, async () => {
    const g = await settled();
    const history: HistoryEntry[] = [];
    const load = runLoad(await registerClients(2, g.endpoint, history), Date.now() + 60_000);
    await eventually(() => (load.acked.length >= 20 ? true : undefined), W, 20);
    await withMembers([1, 2, 0]);
    const three = await settled(3);
    expect(three.synced).toContain(0);
    const before = load.acked.length;
    await eventually(() => (load.acked.length >= before + 20 ? true : undefined), W, 20);
    await withMembers([1, 2]);
    const two = await settled(2);
    expect(two.synced).not.toContain(0);
    const after = load.acked.length;
    await eventually(() => (load.acked.length >= after + 20 ? true : undefined), W, 20);
    await load.stop();
    expect(history.every((h) => h.completedAt !== undefined)).toBe(true);
    const check = checkRegisterHistory(history);
    expect(check.ok, check.explanation).toBe(true);
  });

  it('a deposed primary woken late (SIGSTOP, then SIGCONT) answers no one: it rejoins as a backup and the history stays linearizable', { timeout: 120_000 }, async () => {
    const g = await settled();
    const history: HistoryEntry[] = [];
    const cs = await registerClients(2, g.endpoint, history);
    const load = runLoad(cs, Date.now() + 60_000);
    await eventually(() => (load.acked.length >= 30 ? true : undefined), W, 20);
    const stopped = g.primary!;
    const pid = tc.runtime(stopped).pid;
    process.kill(pid, 'SIGSTOP');
    try {
      load.markKill();
      const taken = await eventually(async () => {
        const now = await group();
        // The record is written once the new primary has gathered its backups (the stopped one times out).
        return now?.primary !== undefined && now.primary !== stopped && now.servedBy === now.primary && now.epoch > g.epoch ? now : undefined;
      }, W, 100);
      expect(taken.epoch).toBeGreaterThan(g.epoch);
      await eventually(() => (load.afterKill() >= 30 ? true : undefined), W, 50);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Woken, the old primary learns it was deposed and rejoins; writes go on meanwhile.
    const back = await settled();
    expect(back.primary).not.toBe(stopped);
    expect(back.synced).toContain(stopped);
    await load.stop();
    expect(history.every((h) => h.completedAt !== undefined)).toBe(true);
    const check = checkRegisterHistory(history);
    expect(check.ok, check.explanation).toBe(true);
  });
});
