/**
 * A9 (reference §4, §2.2 wakeup): a blocked receive returns EDVSWOKENUP; a process that is not
 * blocked is flagged so that its next receive(ANY) fails with EDVSWOKENUP, once.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { Kernel, MISC } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { isPending, track } from './helpers.js';

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

function setup(): Kernel {
  const k = new Kernel({ nodeId: 0, clock: systemClock });
  k.createDc({ dcid: 0, nodes: [0, 1] });
  return k;
}

describe('A9: wakeup', { timeout: 2000 }, () => {
  it('wakes a blocked receive(ANY) with EDVSWOKENUP', async () => {
    const k = setup();
    const p = k.bind(0);
    const rv = track(p.receive(ANY, T));
    expect(await isPending(rv)).toBe(true);
    k.wakeup(0, p.endpoint);
    await expect(rv).rejects.toMatchObject({ code: 'EDVSWOKENUP', errno: -348 });
    // Consumed by that receive: the next one blocks normally.
    await expect(p.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
    expect(k.procs(0)[0]?.rtsFlags).toBe(0);
  });

  it('wakes a receive blocked on a specific source, and a blocked receiveRequest', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const other = k.bind(0);
    const rv = track(server.receive(other.endpoint, T));
    k.wakeup(0, server.endpoint);
    await expect(rv).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
    const rq = track(server.receiveRequest(T));
    k.wakeup(0, server.endpoint);
    await expect(rq).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
    // After the wakeups the server still receives normally.
    const rv2 = track(server.receive(ANY, T));
    await other.send(server.endpoint, { type: 3 }, T);
    await expect(rv2).resolves.toMatchObject({ type: 3 });
  });

  it('flags a process that is not blocked: its next receive(ANY) fails once with EDVSWOKENUP', async () => {
    const k = setup();
    const p = k.bind(0);
    const sender = k.bind(0);
    k.wakeup(0, p.endpoint);
    const row = k.procs(0).find((r) => r.endpoint === p.endpoint)!;
    expect(row.miscFlags & MISC.WOKENUP).toBe(MISC.WOKENUP);
    expect(row.flags).toContain('WOKENUP');
    // Even with a message waiting, the flag wins first.
    const s = track(sender.send(p.endpoint, { type: 1 }, T));
    await expect(p.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
    expect(k.procs(0).find((r) => r.endpoint === p.endpoint)?.miscFlags).toBe(0);
    await expect(p.receive(ANY, T)).resolves.toMatchObject({ source: sender.endpoint, type: 1 });
    await s;
  });

  it('wakeups of a running process do not accumulate', async () => {
    const k = setup();
    const p = k.bind(0);
    k.wakeup(0, p.endpoint);
    k.wakeup(0, p.endpoint);
    await expect(p.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
    await expect(p.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('a receive from a specific source does not consume the flag; the next receive(ANY) does', async () => {
    const k = setup();
    const p = k.bind(0);
    const sender = k.bind(0);
    k.wakeup(0, p.endpoint);
    const s = track(sender.send(p.endpoint, { type: 2 }, T));
    await expect(p.receive(sender.endpoint, T)).resolves.toMatchObject({ type: 2 });
    await s;
    await expect(p.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
  });

  it('the flag also fails the next receiveRequest, once', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    k.wakeup(0, server.endpoint);
    await expect(server.receiveRequest(T)).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
    await expect(server.receiveRequest({ timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('does not interrupt a sendrec; the flag waits for the next receive(ANY)', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const client = k.bind(0);
    const sr = track(client.sendrec(server.endpoint, { type: 1 }, T));
    k.wakeup(0, client.endpoint);
    expect(await isPending(sr)).toBe(true);
    await server.receiveRequest(T);
    await server.reply(client.endpoint, { type: 0 });
    await expect(sr).resolves.toMatchObject({ type: 0 });
    await expect(client.receive(ANY, T)).rejects.toMatchObject({ code: 'EDVSWOKENUP' });
  });

  it('refuses remote, unbound and reserved endpoints', () => {
    const k = setup();
    k.bindRemote(0, 3, 1);
    expect(codeOf(() => k.wakeup(0, 3))).toBe('EDVSRMTPROC');
    expect(codeOf(() => k.wakeup(0, 40))).toBe('EDVSNOTBIND');
    expect(codeOf(() => k.wakeup(0, ANY))).toBe('EDVSENDPOINT');
  });
});
