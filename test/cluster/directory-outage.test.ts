/**
 * Registration across a store outage, over real TCP: the embedded store (a durable one, in a temp
 * data directory) stopped for longer than the node's lease TTL, then restarted on the same port and
 * data directory. While it is down, `registerNode` fails with a typed error and leaves nothing
 * behind (callable again); the registered node's lease is lost; once the store is back,
 * `registerNode` works again, with no old lease or entry of the node left in the store. A
 * registration's timeout and abort end it at once, and a lease granted after it gave up is revoked.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Directory } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { StoreClient } from '../../src/cluster/store-client.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import type { CoordinationStore, LeaseId } from '../../src/cluster/store.js';
import { DvsError } from '../../src/ipc/errors.js';
import { codeOf, FaultyStore, until } from './helpers.js';

const KEY = 'directory-outage-test-key-0123456789';
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function node(id: number): { nodeId: number; host: string; port: number } {
  return { nodeId: id, host: '127.0.0.1', port: 7000 + id };
}

/** A durable embedded store that can be stopped and started again on the same port and data directory. */
class RestartableStore {
  store: MemoryStore | undefined;
  server: StoreServer | undefined;
  port = 0;

  private constructor(readonly dir: string) {}

  static async create(): Promise<RestartableStore> {
    const s = new RestartableStore(await mkdtemp(path.join(os.tmpdir(), 'dvs-dir-outage-')));
    closers.push(async () => {
      await s.stop();
      await rm(s.dir, { recursive: true, force: true });
    });
    await s.start();
    return s;
  }

  async start(): Promise<void> {
    this.store = MemoryStore.open(this.dir, { fsync: false });
    this.server = new StoreServer({ clusterKey: KEY, store: this.store, ...(this.port === 0 ? {} : { port: this.port }) });
    this.port = (await this.server.listen()).port;
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.store?.closeSync();
    this.server = undefined;
    this.store = undefined;
  }

  live(): MemoryStore {
    if (this.store === undefined) throw new Error('the store is stopped');
    return this.store;
  }
}

/** The store, recording how each `revokeLease` call ended. */
function recordingRevokes(inner: CoordinationStore, outcomes: Map<LeaseId, string>): CoordinationStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'revokeLease') {
        return async (lease: LeaseId): Promise<void> => {
          try {
            await target.revokeLease(lease);
            outcomes.set(lease, 'revoked');
          } catch (err) {
            outcomes.set(lease, err instanceof DvsError ? err.code : String(err));
            throw err;
          }
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Calls `fn` until it succeeds, with a short pause between failures (at most `attempts` times); the errors seen meanwhile. */
async function retry<T>(fn: () => Promise<T>, attempts: number): Promise<{ value: T; errors: string[] }> {
  const errors: string[] = [];
  for (let i = 0; i < attempts; i++) {
    try {
      return { value: await fn(), errors };
    } catch (err) {
      errors.push(err instanceof DvsError ? err.code : String(err));
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`no success in ${attempts} attempts: ${errors.join(', ')}`);
}

describe('registration across a store outage', () => {
  it('fails cleanly while the store is down, and works again once it is back after the lease was lost', async () => {
    const rs = await RestartableStore.create();
    const client = await StoreClient.connect({ port: rs.port, clusterKey: KEY, requestTimeoutMs: 1000, reconnectMinMs: 10, reconnectMaxMs: 100 });
    closers.push(() => client.close());
    const revokes = new Map<LeaseId, string>();
    const d = new Directory(recordingRevokes(client, revokes), { registerTimeoutMs: 3000 });
    closers.push(() => d.close());
    d.on('error', () => undefined);
    const lost: number[] = [];
    d.on('leaseLost', (e) => lost.push(e.nodeId));
    const first = await d.registerNode(node(1), 1500);
    await d.createDc({ dcid: 0, nodes: [1, 2] });
    const srv = await d.claimEndpoint(0, 1, { slot: 3, name: 'srv' });

    await rs.stop();
    // Down: registering another node fails with a typed error, and leaves no registration behind.
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      let code = '';
      try {
        await d.registerNode(node(2), 1500);
      } catch (err) {
        expect(err).toBeInstanceOf(DvsError);
        code = (err as DvsError).code;
      }
      expect(['EDVSNOTCONN', 'EDVSTIMEDOUT']).toContain(code);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(d.registeredNodes().map((n) => n.nodeId)).not.toContain(2);
    }
    // Longer than the TTL: node 1's lease is lost.
    await until(() => lost.length === 1, 8000, 'leaseLost');
    expect(lost).toEqual([1]);
    expect(d.registeredNodes()).toEqual([]);
    // The directory's revoke of the lost lease cannot reach the store either.
    await until(() => revokes.has(first.lease), 5000, 'the revoke of the lost lease ended');
    expect(revokes.get(first.lease)).toBe('EDVSNOTCONN');

    await rs.start();
    // Back: registering works again (the caller retries until the client has reconnected).
    const { value: again, errors } = await retry(() => d.registerNode(node(1), 1500), 100);
    // Never refused as busy by its own lost registration (the store kept it, with a fresh TTL).
    expect(errors).not.toContain('EDVSNODEBUSY');
    expect(again.incarnation).toBe(first.incarnation + 1);
    const store = rs.live();
    await until(() => store.getSync('/dvs/nodes/1')?.lease === again.lease, 3000, 'the new registration in the store');
    // Nothing of the lost registration is left: its lease, its node entry, its endpoint.
    expect(store.leaseTtl(first.lease)).toBeUndefined();
    expect(store.getSync('/dvs/dcs/0/eps/3')).toBeUndefined();
    await until(() => d.lookup(0, srv) === undefined && d.node(1)?.incarnation === again.incarnation, 3000, 'the cache agrees');
    // Neither of node 2's failed registrations left a lease or an entry.
    expect(store.getSync('/dvs/nodes/2')).toBeUndefined();
    const two = await d.registerNode(node(2), 1500);
    expect(two.incarnation).toBe(1);
    expect(store.leaseCount).toBe(2);
    // And the node works: it claims its server slot again, at the next generation.
    const srv2 = await d.claimEndpoint(0, 1, { slot: 3, name: 'srv' });
    expect(srv2).not.toBe(srv);
  }, 40_000);

  it('a directory that could not even start while the store was down starts and registers once it is back', async () => {
    const rs = await RestartableStore.create();
    const client = await StoreClient.connect({ port: rs.port, clusterKey: KEY, requestTimeoutMs: 500, reconnectMinMs: 10, reconnectMaxMs: 100 });
    closers.push(() => client.close());
    await rs.stop();
    const d = new Directory(client);
    closers.push(() => d.close());
    d.on('error', () => undefined);
    let code = '';
    try {
      await d.registerNode(node(4), 2000);
    } catch (err) {
      code = err instanceof DvsError ? err.code : String(err);
    }
    expect(['EDVSNOTCONN', 'EDVSTIMEDOUT']).toContain(code);
    await rs.start();
    const { value } = await retry(() => d.registerNode(node(4), 2000), 100);
    expect(value.incarnation).toBe(1);
    expect(d.nodes().map((n) => n.nodeId)).toEqual([4]);
  }, 30_000);
});

describe('a registration’s timeout and abort', () => {
  it('end it with EDVSTIMEDOUT or EDVSINTR; a lease granted after it gave up is revoked, and it can be called again', async () => {
    const store = new MemoryStore();
    closers.push(() => store.close());
    const slow = new FaultyStore(store);
    const d = new Directory(slow);
    closers.push(() => d.close());
    await d.start();
    slow.delayMs = 300;
    const started = Date.now();
    expect(await codeOf(d.registerNode(node(1), 5000, { timeoutMs: 100 }))).toBe('EDVSTIMEDOUT');
    expect(Date.now() - started).toBeLessThan(290);
    const abort = new AbortController();
    const aborted = codeOf(d.registerNode(node(1), 5000, { signal: abort.signal }));
    await until(() => slow.calls.get('grantLease') === 2, 2000, 'the second grant sent');
    abort.abort();
    expect(await aborted).toBe('EDVSINTR');
    expect(d.registeredNodes()).toEqual([]);
    // Both grants land later; both leases are revoked once they do.
    await until(() => slow.calls.get('revokeLease') >= 2 && store.leaseCount === 0, 5000, 'the late leases revoked');
    expect(store.getSync('/dvs/nodes/1')).toBeUndefined();
    slow.delayMs = 0;
    const rec = await d.registerNode(node(1), 5000);
    expect(rec.incarnation).toBe(1);
    expect(store.leaseCount).toBe(1);
  });
});
