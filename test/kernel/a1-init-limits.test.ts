/**
 * A1 (reference §4): DVS init/info, DC init/info, end. Limits are honoured; a second DC init gives
 * EDVSDCRUN; an unknown DC gives EDVSBADDCID; every call after shutdown gives EDVSDVSINIT.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { Kernel } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';

const clock = systemClock;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  return undefined;
}

describe('A1: kernel and DC init, info, end', { timeout: 2000 }, () => {
  it('reports its node, that it runs, its DCs and its limits', () => {
    const k = new Kernel({ nodeId: 3, clock, limits: { maxPayloadBytes: 2048 } });
    expect(k.nodeId).toBe(3);
    expect(k.info()).toEqual({ nodeId: 3, running: true, dcs: [], limits: { maxPayloadBytes: 2048, maxCopyChunk: 1048576 }, downNodes: [] });
    k.createDc({ dcid: 0 });
    k.createDc({ dcid: 7, name: 'web' });
    expect(k.info().dcs.sort()).toEqual([0, 7]);
    expect(k.listDcs().map((d) => d.name).sort()).toEqual(['DC0', 'web']);
  });

  it('refuses a bad node id or bad kernel limits', () => {
    expect(codeOf(() => new Kernel({ nodeId: -1, clock }))).toBe('EDVSBADNODEID');
    expect(codeOf(() => new Kernel({ nodeId: 1.5, clock }))).toBe('EDVSBADNODEID');
    expect(codeOf(() => new Kernel({ nodeId: 0, clock, limits: { maxCopyChunk: 0 } }))).toBe('EDVSBADVALUE');
  });

  it('creates a DC with the default reference dimensions and the local node as member', () => {
    const k = new Kernel({ nodeId: 2, clock });
    const info = k.createDc({ dcid: 1, nodes: [0, 5] });
    expect(info).toEqual({ dcid: 1, name: 'DC1', nodes: [0, 2, 5], limits: { nrNodes: 32, nrTasks: 36, nrProcs: 220, nrSysProcs: 64 }, localProcs: 0, remoteProcs: 0 });
    expect(k.dcInfo(1)).toEqual(info);
  });

  it('honours custom DC limits: slot range, user slots, system slots, exhaustion', async () => {
    const k = new Kernel({ nodeId: 0, clock });
    const info = k.createDc({ dcid: 0, limits: { nrNodes: 2, nrTasks: 6, nrProcs: 10, nrSysProcs: 8 } });
    expect(info.limits).toEqual({ nrNodes: 2, nrTasks: 6, nrProcs: 10, nrSysProcs: 8 });
    // Slots run -6..9; 0 and 1 are servers (8 - 6), 2..9 are users.
    expect(codeOf(() => k.bind(0, { slot: 10 }))).toBe('EDVSRANGE');
    expect(codeOf(() => k.bind(0, { slot: -7 }))).toBe('EDVSRANGE');
    const task = k.bind(0, { slot: -6 });
    expect(task.endpoint).toBe(-6);
    const server = k.bind(0, { slot: 1 });
    const users = [];
    for (let i = 0; i < 8; i++) users.push(k.bind(0));
    expect(users.map((u) => u.endpoint)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(codeOf(() => k.bind(0))).toBe('EDVSNOSPC');
    expect(k.dcInfo(0).localProcs).toBe(10);
    // Slot 1 is system (may receiveRequest), slot 2 is a user (may not).
    expect(k.getPrivileges(0, server.endpoint).level).toBe('server');
    expect(k.getPrivileges(0, users[0]!.endpoint).level).toBe('user');
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(users[0]!.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
    // A node beyond nrNodes cannot join this DC.
    expect(codeOf(() => k.addNode(0, 2))).toBe('EDVSBADNODEID');
    expect(k.addNode(0, 1).nodes).toEqual([0, 1]);
    expect(codeOf(() => k.addNode(0, 1))).toBe('EDVSDCNODE');
  });

  it('refuses DC limits that are inconsistent, and nodes outside them', () => {
    const k = new Kernel({ nodeId: 0, clock });
    expect(codeOf(() => k.createDc({ dcid: 0, limits: { nrNodes: 8, nrTasks: 4 } }))).toBe('EDVSBADVALUE');
    expect(codeOf(() => k.createDc({ dcid: 0, limits: { nrProcs: 0 } }))).toBe('EDVSBADVALUE');
    expect(codeOf(() => k.createDc({ dcid: 0, nodes: [32] }))).toBe('EDVSBADNODEID');
    expect(codeOf(() => k.createDc({ dcid: 0, limits: { nrNodes: 2 }, nodes: [2] }))).toBe('EDVSBADNODEID');
    // A kernel whose own node is outside the DC's node range cannot host it.
    const far = new Kernel({ nodeId: 40, clock });
    expect(codeOf(() => far.createDc({ dcid: 0 }))).toBe('EDVSBADNODEID');
    // None of the failures left a DC behind.
    expect(k.info().dcs).toEqual([]);
    k.createDc({ dcid: 0 });
    expect(k.info().dcs).toEqual([0]);
  });

  it('gives EDVSDCRUN for a second init of the same DC, which keeps running', () => {
    const k = new Kernel({ nodeId: 0, clock });
    k.createDc({ dcid: 4, limits: { nrProcs: 50 } });
    const p = k.bind(4);
    expect(codeOf(() => k.createDc({ dcid: 4 }))).toBe('EDVSDCRUN');
    expect(codeOf(() => k.createDc({ dcid: 4, limits: { nrProcs: 10 } }))).toBe('EDVSDCRUN');
    expect(k.dcInfo(4).limits.nrProcs).toBe(50);
    expect(p.bound).toBe(true);
    expect(k.procs(4).map((r) => r.endpoint)).toEqual([p.endpoint]);
  });

  it('gives EDVSBADDCID for a bad or unknown DC id', async () => {
    const k = new Kernel({ nodeId: 0, clock });
    for (const dcid of [-1, 1.5, 0x10000, Number.NaN]) expect(codeOf(() => k.createDc({ dcid })), String(dcid)).toBe('EDVSBADDCID');
    k.createDc({ dcid: 0 });
    expect(codeOf(() => k.bind(9))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.dcInfo(9))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.procs(9))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.unbind(9, 30))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.bindRemote(9, 5, 1))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.wakeup(9, 30))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.getPrivileges(9, 30))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.addNode(9, 1))).toBe('EDVSBADDCID');
    expect(codeOf(() => k.destroyDc(9))).toBe('EDVSBADDCID');
    await expect(k.waitForBind(9, 5, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSBADDCID' });
    await expect(k.waitForUnbind(9, 5, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSBADDCID' });
    // DC 0 is untouched.
    expect(k.bind(0).endpoint).toBe(28);
  });

  it('destroys a DC: its processes end with EDVSSHUTDOWN and its id becomes free', async () => {
    const k = new Kernel({ nodeId: 0, clock });
    k.createDc({ dcid: 0 });
    const p = k.bind(0);
    const pending = p.receive(ANY, { timeoutMs: 1000 });
    const watch = k.waitForBind(0, 50, { timeoutMs: 1000 });
    k.destroyDc(0);
    await expect(pending).rejects.toMatchObject({ code: 'EDVSSHUTDOWN', errno: -65 });
    await expect(watch).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
    expect(p.bound).toBe(false);
    expect(codeOf(() => k.procs(0))).toBe('EDVSBADDCID');
    k.createDc({ dcid: 0 });
    expect(k.procs(0)).toEqual([]);
  });

  it('shutdown ends pending calls with EDVSSHUTDOWN and later calls fail with EDVSDVSINIT', async () => {
    const k = new Kernel({ nodeId: 0, clock });
    k.createDc({ dcid: 0 });
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const pending = server.receive(ANY, { timeoutMs: 1000 });
    const watch = k.waitForBind(0, 2, { timeoutMs: 1000 });
    k.shutdown();
    await expect(pending).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
    await expect(watch).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
    expect(k.info().running).toBe(false);
    expect(k.info().dcs).toEqual([]);
    k.shutdown(); // idempotent

    // Kernel calls.
    expect(codeOf(() => k.createDc({ dcid: 1 }))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.bind(0))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.procs(0))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.dcInfo(0))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.unbind(0, client.endpoint))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.wakeup(0, server.endpoint))).toBe('EDVSDVSINIT');
    expect(codeOf(() => k.setPrivileges(0, server.endpoint, { level: 'server', allowedCalls: ['send'], ipcTo: 'all' }))).toBe('EDVSDVSINIT');
    await expect(k.waitForBind(0, 5, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSDVSINIT', errno: -318 });

    // The handles of processes bound before the shutdown.
    await expect(client.send(server.endpoint, { type: 1 }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    await expect(client.sendrec(server.endpoint, { type: 1 }, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    await expect(server.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    await expect(server.reply(client.endpoint, { type: 1 })).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    await expect(server.notify(2)).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
    expect(codeOf(() => client.grant(new Uint8Array(4), { grantee: ANY, access: 'read' }))).toBe('EDVSDVSINIT');
    await expect(client.copyFrom({ owner: server.endpoint, grant: 1 }, new Uint8Array(4))).rejects.toMatchObject({ code: 'EDVSDVSINIT' });
  });
});
