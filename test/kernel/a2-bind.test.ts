/**
 * A2 (reference §4, §2.2 bind/unbind): the endpoint is returned; EDVSSLOTUSED; a remote descriptor
 * shows REMOTE in procs; unbind cascades errors to everyone waiting on the dead endpoint; rebinding
 * gives a new generation and the old endpoint then fails with EDVSENDPOINT.
 */
import { describe, expect, it } from 'vitest';
import { ANY, NONE, SELF } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { formatProcTable, Kernel, RTS, type KernelFrame } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { isPending, track } from './helpers.js';

const G = 36 + SELF + 1;
const T = { timeoutMs: 1000 };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  return undefined;
}

function setup(nodes?: number[]): Kernel {
  const k = new Kernel({ nodeId: 0, clock: systemClock });
  k.createDc(nodes === undefined ? { dcid: 0 } : { dcid: 0, nodes });
  return k;
}

describe('A2: bind', { timeout: 2000 }, () => {
  it('returns the endpoint: the slot at generation 0, the lowest free user slot by default', () => {
    const k = setup();
    const a = k.bind(0);
    const b = k.bind(0);
    const pm = k.bind(0, { slot: 0, name: 'pm' });
    const systask = k.bind(0, { slot: -2, name: 'systask' });
    expect(a.endpoint).toBe(28);
    expect(b.endpoint).toBe(29);
    expect(pm.endpoint).toBe(0);
    expect(systask.endpoint).toBe(-2);
    expect(a.dcid).toBe(0);
    expect(a.bound).toBe(true);
    expect(pm.name).toBe('pm');
    expect(a.name).toBe('ep28');
    // A freed user slot is reused first.
    k.unbind(0, a.endpoint);
    const c = k.bind(0);
    expect(k.procs(0).find((r) => r.slot === 28)?.endpoint).toBe(c.endpoint);
    expect(c.endpoint).toBe(G + 28);
  });

  it('gives EDVSSLOTUSED for a slot that is taken, and leaves its owner alone', async () => {
    const k = setup();
    const pm = k.bind(0, { slot: 0 });
    expect(codeOf(() => k.bind(0, { slot: 0 }))).toBe('EDVSSLOTUSED');
    expect(codeOf(() => k.bind(0, { endpoint: 0 }))).toBe('EDVSSLOTUSED');
    try {
      k.bind(0, { slot: 0 });
    } catch (err) {
      expect((err as DvsError).errno).toBe(-337);
    }
    expect(pm.bound).toBe(true);
    const user = k.bind(0);
    const r = track(pm.receive(ANY, T));
    await user.send(0, { type: 1 }, T);
    await expect(r).resolves.toMatchObject({ source: user.endpoint, type: 1 });
  });

  it('binds an exact endpoint and keeps generations moving forward', async () => {
    const k = setup();
    const p = k.bind(0, { endpoint: 5 * G + 40 });
    expect(p.endpoint).toBe(5 * G + 40);
    expect(k.procs(0)[0]).toMatchObject({ slot: 40, generation: 5 });
    await p.unbind();
    // An older or equal generation of the slot cannot come back.
    expect(codeOf(() => k.bind(0, { endpoint: 5 * G + 40 }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { endpoint: 40 }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { endpoint: 6 * G + 40, slot: 41 }))).toBe('EDVSBADVALUE');
    // Binding by slot takes the next generation.
    expect(k.bind(0, { slot: 40 }).endpoint).toBe(6 * G + 40);
  });

  it('refuses the KERNEL/HARDWARE slot, reserved endpoints and long names', () => {
    const k = setup();
    expect(codeOf(() => k.bind(0, { slot: -1 }))).toBe('EDVSBADPROC');
    expect(codeOf(() => k.bind(0, { endpoint: ANY }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { endpoint: NONE }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { endpoint: SELF }))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { slot: 2.5 }))).toBe('EDVSRANGE');
    expect(codeOf(() => k.bind(0, { name: 'x'.repeat(33) }))).toBe('EDVSNAMESIZE');
    expect(k.bind(0, { name: 'x'.repeat(32) }).endpoint).toBe(28);
    expect(k.procs(0)).toHaveLength(1);
  });

  it('shows local processes in procs with their state flags', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1, name: 'fs' });
    const client = k.bind(0, { name: 'cli' });
    const other = k.bind(0, { name: 'other' });
    const r = track(server.receive(other.endpoint, T));
    const s = track(client.send(server.endpoint, { type: 9 }, T));
    const rows = k.procs(0);
    const srow = rows.find((x) => x.endpoint === server.endpoint)!;
    const crow = rows.find((x) => x.endpoint === client.endpoint)!;
    expect(srow).toMatchObject({ kind: 'local', node: 0, name: 'fs', getfrom: other.endpoint, sendto: NONE, queued: 1 });
    expect(srow.rtsFlags & RTS.RECEIVING).toBe(RTS.RECEIVING);
    expect(srow.flags).toContain('RECEIVING');
    expect(crow).toMatchObject({ getfrom: NONE, sendto: server.endpoint, rtsFlags: RTS.SENDING, miscFlags: 0 });
    const text = formatProcTable(rows);
    expect(text.split('\n')[0]).toContain('-endp-');
    expect(text).toMatch(/\bfs\n/);
    // Clean up: the receive from `other` and the send both complete.
    await other.send(server.endpoint, { type: 1 }, T);
    await expect(r).resolves.toMatchObject({ source: other.endpoint });
    await expect(server.receive(ANY, T)).resolves.toMatchObject({ source: client.endpoint, type: 9 });
    await expect(s).resolves.toBeUndefined();
    expect(k.procs(0).every((x) => x.rtsFlags === 0 && x.miscFlags === 0)).toBe(true);
  });
});

describe('A2: remote bind', { timeout: 2000 }, () => {
  it('creates a REMOTE descriptor shown in procs and counted in dcInfo', () => {
    const k = setup([0, 1, 2]);
    k.bindRemote(0, 3, 1, 'rdisk');
    const row = k.procs(0).find((r) => r.slot === 3)!;
    expect(row).toMatchObject({ kind: 'remote', node: 1, endpoint: 3, name: 'rdisk', generation: 0 });
    expect(row.rtsFlags).toBe(RTS.REMOTE);
    expect(row.rtsFlags).toBe(0x1000);
    expect(row.flags).toEqual(['REMOTE']);
    expect(formatProcTable([row])).toMatch(/\s1000\s/);
    expect(k.dcInfo(0)).toMatchObject({ localProcs: 0, remoteProcs: 1 });
    // Re-binding the same endpoint moves it; a newer generation replaces it.
    k.bindRemote(0, 3, 2);
    expect(k.procs(0).find((r) => r.slot === 3)).toMatchObject({ node: 2, name: 'rdisk' });
    k.bindRemote(0, G + 3, 1);
    expect(k.procs(0).find((r) => r.slot === 3)).toMatchObject({ endpoint: G + 3, node: 1, generation: 1 });
    expect(codeOf(() => k.bindRemote(0, 3, 1))).toBe('EDVSENDPOINT');
  });

  it('refuses the local node, a node outside the DC, a locally bound slot, a reserved endpoint', () => {
    const k = setup([0, 1]);
    const local = k.bind(0, { slot: 4 });
    expect(codeOf(() => k.bindRemote(0, 3, 0))).toBe('EDVSBADNODEID');
    expect(codeOf(() => k.bindRemote(0, 3, 5))).toBe('EDVSNODCNODE');
    expect(codeOf(() => k.bindRemote(0, local.endpoint, 1))).toBe('EDVSSLOTUSED');
    expect(codeOf(() => k.bindRemote(0, ANY, 1))).toBe('EDVSENDPOINT');
    expect(codeOf(() => k.bind(0, { slot: 4 }))).toBe('EDVSSLOTUSED');
    k.bindRemote(0, 5, 1);
    expect(codeOf(() => k.bind(0, { slot: 5 }))).toBe('EDVSSLOTUSED');
    expect(k.dcInfo(0)).toMatchObject({ localProcs: 1, remoteProcs: 1 });
  });

  it('sends to a remote endpoint through the transport, or fails with EDVSNOPROXY without one', async () => {
    const alone = setup([0, 1]);
    alone.bindRemote(0, 3, 1);
    const p = alone.bind(0);
    await expect(p.send(3, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSNOPROXY' });

    const frames: [number, KernelFrame][] = [];
    const k = new Kernel({ nodeId: 0, clock: systemClock, transport: { send: (node, frame) => frames.push([node, frame]) } });
    k.createDc({ dcid: 0, nodes: [0, 1] });
    k.bindRemote(0, 3, 1);
    const q = k.bind(0);
    const s = track(q.send(3, { type: 7, payload: 'hi' }, T));
    expect(frames).toHaveLength(1);
    expect(frames[0]![0]).toBe(1);
    expect(frames[0]![1]).toMatchObject({ k: 'send', dc: 0, src: q.endpoint, dst: 3, type: 7, payload: 'hi', rec: false });
    // Rendezvous holds across nodes: the send completes only when the remote kernel acknowledges it.
    expect(await isPending(s)).toBe(true);
    const id = (frames[0]![1] as { id: number }).id;
    k.receiveFrame(1, { k: 'send-ack', dc: 0, id, rc: 0 });
    await expect(s).resolves.toBeUndefined();
  });

  it('dropping a remote descriptor fails local receivers waiting on it with EDVSSRCDIED', async () => {
    const k = setup([0, 1]);
    k.bindRemote(0, 3, 1);
    const p = k.bind(0);
    const r = track(p.receive(3, T));
    k.unbind(0, 3);
    await expect(r).rejects.toMatchObject({ code: 'EDVSSRCDIED', errno: -108 });
    expect(k.procs(0).map((x) => x.slot)).toEqual([p.endpoint]);
  });
});

describe('A2: unbind', { timeout: 2000 }, () => {
  it('wakes queued senders with EDVSDSTDIED and queued sendrec callers with EDVSDEADSRCDST', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const a = k.bind(0);
    const b = k.bind(0);
    const sa = track(a.send(server.endpoint, { type: 1 }, T));
    const sb = track(b.sendrec(server.endpoint, { type: 2 }, T));
    expect(k.procs(0).find((r) => r.endpoint === server.endpoint)?.queued).toBe(2);
    await server.unbind();
    await expect(sa).rejects.toMatchObject({ code: 'EDVSDSTDIED', errno: -109 });
    await expect(sb).rejects.toMatchObject({ code: 'EDVSDEADSRCDST', errno: -105 });
    expect(server.bound).toBe(false);
    // The senders are free again.
    expect(k.procs(0).every((r) => r.rtsFlags === 0)).toBe(true);
  });

  it('wakes a sendrec caller whose request was taken with EDVSDEADSRCDST', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const c = k.bind(0);
    const sr = track(c.sendrec(server.endpoint, { type: 3 }, T));
    await expect(server.receiveRequest(T)).resolves.toMatchObject({ source: c.endpoint, type: 3 });
    k.unbind(0, server.endpoint);
    await expect(sr).rejects.toMatchObject({ code: 'EDVSDEADSRCDST' });
  });

  it('wakes processes receiving from it with EDVSSRCDIED; receivers from ANY keep waiting', async () => {
    const k = setup();
    const dying = k.bind(0);
    const r1 = k.bind(0, { slot: 2 });
    const r2 = k.bind(0, { slot: 3 });
    const fromIt = track(r1.receive(dying.endpoint, T));
    const fromAny = track(r2.receive(ANY, T));
    k.unbind(0, dying.endpoint);
    await expect(fromIt).rejects.toMatchObject({ code: 'EDVSSRCDIED' });
    const x = k.bind(0);
    await x.send(r2.endpoint, { type: 5 }, T);
    await expect(fromAny).resolves.toMatchObject({ source: x.endpoint, type: 5 });
  });

  it("ends the unbound process's own pending calls with EDVSSHUTDOWN, withdrawing its queued sends", async () => {
    const k = setup();
    const p = k.bind(0, { slot: 1 });
    const dst = k.bind(0, { slot: 2 });
    const dst2 = k.bind(0, { slot: 3 });
    const recv = track(p.receive(ANY, T));
    const send = track(p.send(dst.endpoint, { type: 1 }, T));
    await p.unbind();
    await expect(recv).rejects.toMatchObject({ code: 'EDVSSHUTDOWN', errno: -65 });
    await expect(send).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
    // The withdrawn send never reaches its destination.
    await expect(dst.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(k.procs(0).find((r) => r.endpoint === dst.endpoint)?.queued).toBe(0);
    // Same for a sendrec still queued.
    const q = k.bind(0, { slot: 4 });
    const sr = track(q.sendrec(dst2.endpoint, { type: 2 }, T));
    k.unbind(0, q.endpoint);
    await expect(sr).rejects.toMatchObject({ code: 'EDVSSHUTDOWN' });
    await expect(dst2.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('clears pending notifications and grants of the unbound process', async () => {
    const k = setup();
    const a = k.bind(0, { slot: 1 });
    const b = k.bind(0, { slot: 2 });
    await expect(a.notify(b.endpoint)).resolves.toBe('pending');
    b.grant(new Uint8Array(8), { grantee: ANY, access: 'read' });
    expect(k.procs(0).find((r) => r.endpoint === b.endpoint)).toMatchObject({ pendingNotifies: 1, grants: 1 });
    await b.unbind();
    const b2 = k.bind(0, { slot: 2 });
    expect(k.procs(0).find((r) => r.endpoint === b2.endpoint)).toMatchObject({ pendingNotifies: 0, grants: 0 });
    await expect(b2.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('rebinding gives a new generation; the old endpoint then fails with EDVSENDPOINT', async () => {
    const k = setup();
    const old = k.bind(0, { slot: 5 });
    const peer = k.bind(0);
    expect(old.endpoint).toBe(5);
    await old.unbind();
    // Gone but not rebound: the old incarnation is dead.
    await expect(peer.send(5, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSDSTDIED' });
    const fresh = k.bind(0, { slot: 5 });
    expect(fresh.endpoint).toBe(G + 5);
    expect(k.procs(0).find((r) => r.slot === 5)).toMatchObject({ endpoint: G + 5, generation: 1 });
    await expect(peer.send(old.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSENDPOINT', errno: -306 });
    await expect(peer.receive(old.endpoint, T)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    expect(codeOf(() => k.unbind(0, old.endpoint))).toBe('EDVSENDPOINT');
    // The old handle is unbound for good; the new one works.
    await expect(old.send(peer.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    await expect(old.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    await expect(old.unbind()).resolves.toBeUndefined();
    const r = track(fresh.receive(ANY, T));
    await peer.send(fresh.endpoint, { type: 2 }, T);
    await expect(r).resolves.toMatchObject({ source: peer.endpoint, type: 2 });
  });
});
