/**
 * A6 (reference §4, §2.2 notify): a pending bit per source; notifications are delivered before
 * queued messages, lowest-numbered source first; a duplicate is 'overrun' with its arg bits OR-ed;
 * only system processes notify and are notified; receiveRequest ignores notifications.
 */
import { describe, expect, it } from 'vitest';
import { ANY, SELF } from '../../src/ipc/endpoint.js';
import { isNotification, NOTIFY_MESSAGE, type Message } from '../../src/ipc/message.js';
import { Kernel, MISC, type Clock, type KernelFrame } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { ManualClock, isPending, track } from './helpers.js';

const T = { timeoutMs: 1000 };
const NR_TASKS = 36;

function setup(clock: Clock = systemClock): Kernel {
  const k = new Kernel({ nodeId: 0, clock });
  k.createDc({ dcid: 0 });
  return k;
}

/** The notification message type for a source slot (NOTIFY_MESSAGE | priv id). */
function notifyType(slot: number): number {
  return NOTIFY_MESSAGE | (slot + NR_TASKS);
}

describe('A6: notify', { timeout: 2000 }, () => {
  it('is delivered at once to a destination receiving from ANY', async () => {
    const clock = new ManualClock();
    clock.t = 1234;
    const k = setup(clock);
    const src = k.bind(0, { slot: 2 });
    const dst = k.bind(0, { slot: 1 });
    const rv = track(dst.receive(ANY, T));
    await expect(src.notify(dst.endpoint, { arg: 6 })).resolves.toBe('delivered');
    const m = await rv;
    expect(m).toEqual({ source: src.endpoint, type: notifyType(2), payload: { arg: 6, timestamp: 1234 } });
    expect(isNotification(m)).toBe(true);
    expect(k.procs(0).find((r) => r.endpoint === dst.endpoint)?.pendingNotifies).toBe(0);
  });

  it('is delivered at once to a destination receiving from the notifier, left pending otherwise', async () => {
    const k = setup();
    const a = k.bind(0, { slot: 2 });
    const b = k.bind(0, { slot: 3 });
    const dst = k.bind(0, { slot: 1 });
    const fromA = track(dst.receive(a.endpoint, T));
    await expect(b.notify(dst.endpoint)).resolves.toBe('pending');
    expect(await isPending(fromA)).toBe(true);
    await expect(a.notify(dst.endpoint)).resolves.toBe('delivered');
    await expect(fromA).resolves.toMatchObject({ source: a.endpoint, type: notifyType(2) });
    await expect(dst.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ source: b.endpoint, type: notifyType(3) });
  });

  it('sets a pending bit shown in procs, taken by the next receive', async () => {
    const k = setup();
    const src = k.bind(0, { slot: 2 });
    const dst = k.bind(0, { slot: 1 });
    await expect(src.notify(dst.endpoint)).resolves.toBe('pending');
    const row = k.procs(0).find((r) => r.endpoint === dst.endpoint)!;
    expect(row.pendingNotifies).toBe(1);
    expect(row.miscFlags & MISC.NOTIFY).toBe(MISC.NOTIFY);
    expect(row.flags).toContain('NOTIFY');
    const m = await dst.receive(ANY, { timeoutMs: 0 });
    expect(m).toMatchObject({ source: src.endpoint, type: notifyType(2), payload: { arg: 0 } });
    expect(k.procs(0).find((r) => r.endpoint === dst.endpoint)?.miscFlags).toBe(0);
    // Consumed: nothing left.
    await expect(dst.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('coalesces duplicates: the second is "overrun", arg bits are OR-ed, one message is delivered', async () => {
    const k = setup();
    const src = k.bind(0, { slot: 2 });
    const dst = k.bind(0, { slot: 1 });
    await expect(src.notify(dst.endpoint, { arg: 0b0001 })).resolves.toBe('pending');
    await expect(src.notify(dst.endpoint, { arg: 0b0100 })).resolves.toBe('overrun');
    await expect(src.notify(dst.endpoint, { arg: 0b0101 })).resolves.toBe('overrun');
    await expect(src.notify(dst.endpoint, { arg: 0x80000000 })).resolves.toBe('overrun');
    expect(k.procs(0).find((r) => r.endpoint === dst.endpoint)?.pendingNotifies).toBe(1);
    const m = await dst.receive(ANY, { timeoutMs: 0 });
    expect(m.payload).toMatchObject({ arg: 0x80000005 });
    await expect(dst.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    // After delivery the bit is clear again.
    await expect(src.notify(dst.endpoint, { arg: 2 })).resolves.toBe('pending');
    await expect(dst.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ payload: { arg: 2 } });
  });

  it('is delivered before queued messages', async () => {
    const k = setup();
    const dst = k.bind(0, { slot: 1 });
    const notifier = k.bind(0, { slot: 5 });
    const user = k.bind(0);
    const s = track(user.send(dst.endpoint, { type: 77 }, T));
    await expect(notifier.notify(dst.endpoint)).resolves.toBe('pending');
    await expect(dst.receive(ANY, T)).resolves.toMatchObject({ source: notifier.endpoint, type: notifyType(5) });
    await expect(dst.receive(ANY, T)).resolves.toMatchObject({ source: user.endpoint, type: 77 });
    await s;
  });

  it('delivers pending notifications lowest-numbered source first, tasks before servers', async () => {
    const k = setup();
    const dst = k.bind(0, { slot: 1 });
    const s20 = k.bind(0, { slot: 20 });
    const s4 = k.bind(0, { slot: 4 });
    const clock = k.bind(0, { slot: -35, name: 'clock' });
    const s0 = k.bind(0, { slot: 0 });
    const systask = k.bind(0, { slot: -2, name: 'systask' });
    for (const p of [s20, s4, clock, s0, systask]) await expect(p.notify(dst.endpoint)).resolves.toBe('pending');
    const got: Message[] = [];
    for (let i = 0; i < 5; i++) got.push(await dst.receive(ANY, { timeoutMs: 0 }));
    expect(got.map((m) => m.source)).toEqual([-35, -2, 0, 4, 20]);
    expect(got.map((m) => m.type)).toEqual([notifyType(-35), notifyType(-2), notifyType(0), notifyType(4), notifyType(20)]);
  });

  it('a receive from a specific source takes only that source’s notification', async () => {
    const k = setup();
    const dst = k.bind(0, { slot: 1 });
    const a = k.bind(0, { slot: 2 });
    const b = k.bind(0, { slot: 3 });
    await a.notify(dst.endpoint);
    await b.notify(dst.endpoint);
    await expect(dst.receive(b.endpoint, { timeoutMs: 0 })).resolves.toMatchObject({ source: b.endpoint });
    await expect(dst.receive(b.endpoint, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    await expect(dst.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ source: a.endpoint });
  });

  it('is refused with EDVSPRIVILEGES for a user-slot destination', async () => {
    const k = setup();
    const src = k.bind(0, { slot: 2 });
    const user = k.bind(0);
    await expect(src.notify(user.endpoint)).rejects.toMatchObject({ code: 'EDVSPRIVILEGES', errno: -335 });
    await expect(src.notify(150)).rejects.toMatchObject({ code: 'EDVSPRIVILEGES' });
    await expect(user.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('is refused with EDVSTRAPDENIED for a user caller, whatever its allowed calls', async () => {
    const k = setup();
    const dst = k.bind(0, { slot: 1 });
    const user = k.bind(0);
    await expect(user.notify(dst.endpoint)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED', errno: -110 });
    k.setPrivileges(0, user.endpoint, { level: 'user', allowedCalls: ['send', 'receive', 'notify'], ipcTo: 'all' });
    await expect(user.notify(dst.endpoint)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
    await expect(dst.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('refuses notifying oneself, SELF, an unbound slot and a bad arg', async () => {
    const k = setup();
    const src = k.bind(0, { slot: 2 });
    await expect(src.notify(src.endpoint)).rejects.toMatchObject({ code: 'EDVSBADDEST' });
    await expect(src.notify(SELF)).rejects.toMatchObject({ code: 'EDVSBADDEST' });
    await expect(src.notify(ANY)).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(src.notify(9)).rejects.toMatchObject({ code: 'EDVSNOTBIND' });
    const dst = k.bind(0, { slot: 9 });
    for (const arg of [-1, 1.5, 2 ** 32, Number.NaN]) await expect(src.notify(dst.endpoint, { arg })).rejects.toMatchObject({ code: 'EDVSBADVALUE' });
    await expect(dst.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('is ignored by receiveRequest, which takes requests and leaves notifications pending', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const notifier = k.bind(0, { slot: 2 });
    const client = k.bind(0);
    await expect(notifier.notify(server.endpoint)).resolves.toBe('pending');
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    const sr = track(client.sendrec(server.endpoint, { type: 3 }, T));
    await expect(server.receiveRequest(T)).resolves.toMatchObject({ source: client.endpoint, type: 3 });
    await server.reply(client.endpoint, { type: 0 });
    await sr;
    // Blocked in receiveRequest, a notification is not delivered: it stays pending.
    const req = track(server.receiveRequest(T));
    await expect(notifier.notify(server.endpoint, { arg: 1 })).resolves.toBe('overrun');
    expect(await isPending(req)).toBe(true);
    const sr2 = track(client.sendrec(server.endpoint, { type: 4 }, T));
    await expect(req).resolves.toMatchObject({ type: 4 });
    await server.reply(client.endpoint, { type: 0 });
    await sr2;
    await expect(server.receive(ANY, { timeoutMs: 0 })).resolves.toMatchObject({ source: notifier.endpoint, payload: { arg: 1 } });
  });

  it('to a remote endpoint is handed to the link: "sent"', async () => {
    const frames: [number, KernelFrame][] = [];
    const k = new Kernel({ nodeId: 0, clock: systemClock, transport: { send: (node, frame) => frames.push([node, frame]) } });
    k.createDc({ dcid: 0, nodes: [0, 1] });
    k.bindRemote(0, 3, 1);
    const src = k.bind(0, { slot: 2 });
    await expect(src.notify(3, { arg: 9 })).resolves.toBe('sent');
    expect(frames).toEqual([[1, { k: 'notify', dc: 0, src: 2, dst: 3, arg: 9 }]]);
  });

  it('respects ipcTo like a send does', async () => {
    const k = setup();
    const src = k.bind(0, { slot: 2, privileges: { level: 'server', allowedCalls: ['notify', 'receive'], ipcTo: [1] } });
    const ok = k.bind(0, { slot: 1 });
    const denied = k.bind(0, { slot: 3 });
    await expect(src.notify(ok.endpoint)).resolves.toBe('pending');
    await expect(src.notify(denied.endpoint)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
  });
});

describe('A6: notify to another node', { timeout: 2000 }, () => {
  it('returns "sent" at once, or, while the link to that node is backed up, once it has room', async () => {
    const link: { gate?: Promise<void> } = {};
    let open: () => void = () => undefined;
    const frames: KernelFrame[] = [];
    const k = new Kernel({ nodeId: 0, clock: systemClock, transport: { send: (_node, f) => frames.push(f), backpressure: (node) => (node === 1 ? link.gate : undefined) } });
    k.createDc({ dcid: 0, nodes: [0, 1] });
    k.bindRemote(0, 1, 1);
    const src = k.bind(0, { slot: 2 });
    await expect(src.notify(1, { arg: 1 })).resolves.toBe('sent');
    link.gate = new Promise<void>((resolve) => (open = resolve));
    const waiting = track(src.notify(1, { arg: 2 }));
    expect(await isPending(waiting)).toBe(true);
    // The frame left at once: the caller waits for the link, never for the destination.
    expect(frames.filter((f) => f.k === 'notify').map((f) => (f as Extract<KernelFrame, { k: 'notify' }>).arg)).toEqual([1, 2]);
    open();
    await expect(waiting).resolves.toBe('sent');
  });
});
