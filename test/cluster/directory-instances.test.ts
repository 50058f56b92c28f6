/**
 * Instance group records in the directory (docs/instances.md): a new group takes the slot's next
 * generation, an update keeps its endpoint and its module, a slot holding an endpoint is refused,
 * every directory's cache sees the record as events, and the record goes with its DC.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Directory, type InstanceGroupEvent } from '../../src/cluster/directory.js';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { codeOf } from './helpers.js';

const dirs: Directory[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => d.close()));
});

function open(store: MemoryStore): Directory {
  const d = new Directory(store);
  dirs.push(d);
  return d;
}

describe('instance group records', () => {
  it('create at the next generation, update in place, refuse an occupied slot, follow in every cache', async () => {
    const store = new MemoryStore();
    const a = open(store);
    const b = open(store);
    const events: InstanceGroupEvent[] = [];
    b.on('instances', (e) => events.push(e));
    await b.start();
    await a.createDc({ dcid: 1, nodes: [0, 1, 2] });
    const space = new EndpointSpace(resolveDcLimits({}));
    // A claim and release in slot 20 first: the group must get a newer generation.
    await a.registerNode({ nodeId: 0, host: '127.0.0.1', port: 7000 }, 5000);
    const claimed = await a.claimEndpoint(1, 0, { slot: 20 });
    await a.releaseEndpoint(1, claimed);
    const g = await a.putInstanceGroup(1, 20, { nodes: [2, 0, 2], module: '/m/echo.mjs', name: 'echo', options: { workMs: 1 } });
    expect(g).toMatchObject({ dcid: 1, slot: 20, name: 'echo', nodes: [0, 2], module: '/m/echo.mjs', options: { workMs: 1 } });
    expect(space.slotOf(g.endpoint)).toBe(20);
    expect(space.generationOf(g.endpoint)).toBe(space.generationOf(claimed) + 1);
    // An update keeps the endpoint, the module and the options.
    const g2 = await a.putInstanceGroup(1, 20, { nodes: [1] });
    expect(g2).toMatchObject({ endpoint: g.endpoint, nodes: [1], module: '/m/echo.mjs', name: 'echo', options: { workMs: 1 } });
    await new Promise((r) => setTimeout(r, 20));
    expect(b.instanceGroup(1, 20)).toMatchObject({ endpoint: g.endpoint, nodes: [1] });
    expect(b.instanceGroups(1).map((x) => x.slot)).toEqual([20]);
    expect(events.map((e) => e.type)).toEqual(['set', 'set']);
    // A slot holding an endpoint, a task slot, a node outside the DC: refused.
    await a.claimEndpoint(1, 0, { slot: 21 });
    expect(await codeOf(a.putInstanceGroup(1, 21, { nodes: [0] }))).toBe('EDVSSLOTUSED');
    expect(await codeOf(a.putInstanceGroup(1, -2, { nodes: [0] }))).toBe('EDVSBADVALUE');
    expect(await codeOf(a.putInstanceGroup(1, 22, { nodes: [5] }))).toBe('EDVSNODCNODE');
    expect(await codeOf(a.putInstanceGroup(9, 22, { nodes: [0] }))).toBe('EDVSBADDCID');
    // Removal.
    expect(await a.removeInstanceGroup(1, 20)).toBe(true);
    expect(await a.removeInstanceGroup(1, 20)).toBe(false);
    await new Promise((r) => setTimeout(r, 20));
    expect(b.instanceGroup(1, 20)).toBeUndefined();
    expect(events.map((e) => e.type)).toEqual(['set', 'set', 'removed']);
  });
});
