/**
 * DC isolation at the kernel boundary: traffic for a DC from a node that is not a member is refused
 * with a typed error on the receiving end, and the sending end refuses to route to non-members.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/index.js';
import { Kernel } from '../../src/kernel/index.js';
import { LoopbackNetwork } from '../../src/runtime/loopback.js';
import { systemClock } from '../../src/runtime/system-clock.js';

function cluster(n: number): Kernel[] {
  const net = new LoopbackNetwork();
  return Array.from({ length: n }, (_, nodeId) => {
    const k = new Kernel({ nodeId, clock: systemClock, transport: net.transportFor(nodeId) });
    net.attach(k);
    return k;
  });
}

describe('DC isolation between kernels', () => {
  it('refuses frames for a DC from a node outside it, with EDVSNODCNODE, and delivers nothing', async () => {
    const [k0, k1, k2] = cluster(3) as [Kernel, Kernel, Kernel];
    k0.createDc({ dcid: 5, nodes: [0, 1] });
    k1.createDc({ dcid: 5, nodes: [0, 1] });
    // Node 2 believes (wrongly) that it belongs to DC 5 and knows the server's endpoint.
    k2.createDc({ dcid: 5, nodes: [0, 1, 2] });
    const server = k0.bind(5, { slot: 3, name: 'srv' });
    k2.bindRemote(5, server.endpoint, 0, 'srv');
    const intruder = k2.bind(5, { slot: 4, name: 'intruder' });
    const before = k0.stats.framesRefused;
    await expect(intruder.send(server.endpoint, { type: 1, payload: 'let me in' }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'EDVSNODCNODE', errno: -319 });
    await expect(intruder.notify(server.endpoint)).resolves.toBe('sent');
    // The notify is refused on arrival: wait for the counter, not for a fixed time.
    for (let i = 0; i < 200 && k0.stats.framesRefused < before + 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(k0.stats.framesRefused).toBeGreaterThanOrEqual(before + 2);
    // Nothing reached the server: neither the message nor the notification.
    await expect(server.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(k0.procs(5).find((p) => p.endpoint === server.endpoint)?.pendingNotifies).toBe(0);
    // A member node gets through.
    k1.bindRemote(5, server.endpoint, 0, 'srv');
    const member = k1.bind(5, { slot: 6, name: 'member' });
    const got = server.receive(ANY, { timeoutMs: 2000 });
    await member.send(server.endpoint, { type: 2, payload: 'hello' }, { timeoutMs: 2000 });
    expect(await got).toMatchObject({ source: member.endpoint, type: 2, payload: 'hello' });
    for (const k of [k0, k1, k2]) k.shutdown();
  });

  it('refuses frames for a DC the receiving node does not run, with EDVSBADDCID', async () => {
    const [k0, k1] = cluster(2) as [Kernel, Kernel];
    k0.createDc({ dcid: 7, nodes: [0, 1] });
    k1.createDc({ dcid: 8, nodes: [0, 1] });
    k0.bindRemote(7, 3, 1, 'ghost');
    const p = k0.bind(7, { slot: 4 });
    await expect(p.send(3, { type: 1 }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'EDVSBADDCID' });
    for (const k of [k0, k1]) k.shutdown();
  });

  it('never routes to a node outside the DC, and forgets its endpoints when it leaves', async () => {
    const [k0, k1] = cluster(2) as [Kernel, Kernel];
    k0.createDc({ dcid: 9, nodes: [0, 1] });
    k1.createDc({ dcid: 9, nodes: [0, 1] });
    const srv = k1.bind(9, { slot: 2 });
    k0.bindRemote(9, srv.endpoint, 1);
    const cli = k0.bind(9, { slot: 3 });
    expect(() => k0.bindRemote(9, 40, 5)).toThrow(expect.objectContaining({ code: 'EDVSNODCNODE' }) as Error);
    k0.removeNode(9, 1);
    await expect(cli.send(srv.endpoint, { type: 1 }, { timeoutMs: 500 })).rejects.toMatchObject({ code: 'EDVSDSTDIED' });
    expect(k0.procs(9).some((p) => p.kind === 'remote')).toBe(false);
    for (const k of [k0, k1]) k.shutdown();
  });

  it('keeps two DCs on the same nodes apart: the same slot number names different processes', async () => {
    const [k0, k1] = cluster(2) as [Kernel, Kernel];
    for (const k of [k0, k1]) {
      k.createDc({ dcid: 1, nodes: [0, 1] });
      k.createDc({ dcid: 2, nodes: [0, 1] });
    }
    const a = k1.bind(1, { slot: 5, name: 'dc1-server' });
    k0.bindRemote(1, a.endpoint, 1);
    const c2 = k0.bind(2, { slot: 6 });
    await expect(c2.send(a.endpoint, { type: 1 }, { timeoutMs: 500 })).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    for (const k of [k0, k1]) k.shutdown();
  });
});
