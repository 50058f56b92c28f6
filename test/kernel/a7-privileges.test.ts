/**
 * A7 (reference §4, §2.3): EDVSBADCALL for a call outside allowedCalls; EDVSTRAPDENIED for a system
 * destination outside ipcTo (user destinations are never restricted) and for system-only calls made
 * by users; setPrivileges/getPrivileges round-trip.
 */
import { describe, expect, it } from 'vitest';
import { ANY } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { IPC_CALLS, type IpcCall, type Privileges } from '../../src/ipc/privileges.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { track } from './helpers.js';

const T = { timeoutMs: 1000 };
const USER_CALLS: IpcCall[] = ['send', 'receive', 'sendrec', 'grant', 'copy'];

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

function without(call: IpcCall): IpcCall[] {
  return IPC_CALLS.filter((c) => c !== call);
}

describe('A7: default privileges', { timeout: 2000 }, () => {
  it('tasks and servers may make every call; users every call but the system-only ones', () => {
    const k = setup();
    const task = k.bind(0, { slot: -2 });
    const server = k.bind(0, { slot: 0 });
    const user = k.bind(0);
    expect(k.getPrivileges(0, task.endpoint)).toEqual({ level: 'task', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    expect(k.getPrivileges(0, server.endpoint)).toEqual({ level: 'server', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    expect(k.getPrivileges(0, user.endpoint)).toEqual({ level: 'user', allowedCalls: USER_CALLS, ipcTo: 'all' });
  });
});

describe('A7: getPrivileges / setPrivileges', { timeout: 2000 }, () => {
  it('round-trips what was set, and bind accepts privileges too', () => {
    const k = setup();
    const p = k.bind(0, { slot: 5 });
    const priv: Privileges = { level: 'system', allowedCalls: ['send', 'receive', 'notify'], ipcTo: [0, 1, -2] };
    k.setPrivileges(0, p.endpoint, priv);
    const got = k.getPrivileges(0, p.endpoint);
    expect(got.level).toBe('system');
    expect(got.allowedCalls).toEqual(['send', 'receive', 'notify']);
    expect([...(got.ipcTo as number[])].sort((a, b) => a - b)).toEqual([-2, 0, 1]);
    k.setPrivileges(0, p.endpoint, { level: 'server', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    expect(k.getPrivileges(0, p.endpoint)).toEqual({ level: 'server', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    const q = k.bind(0, { privileges: { level: 'user', allowedCalls: ['receive'], ipcTo: [] } });
    expect(k.getPrivileges(0, q.endpoint)).toEqual({ level: 'user', allowedCalls: ['receive'], ipcTo: [] });
  });

  it('refuses bad privileges with EDVSBADVALUE and keeps the old ones', () => {
    const k = setup();
    const p = k.bind(0, { slot: 5 });
    const before = k.getPrivileges(0, p.endpoint);
    const bad: unknown[] = [
      { level: 'root', allowedCalls: [], ipcTo: 'all' },
      { level: 'server', allowedCalls: ['fork'], ipcTo: 'all' },
      { level: 'server', allowedCalls: [], ipcTo: 'some' },
      { level: 'server', allowedCalls: [], ipcTo: [1.5] },
    ];
    for (const priv of bad) expect(codeOf(() => k.setPrivileges(0, p.endpoint, priv as Privileges))).toBe('EDVSBADVALUE');
    expect(codeOf(() => k.bind(0, { slot: 6, privileges: bad[0] as Privileges }))).toBe('EDVSBADVALUE');
    expect(k.procs(0).map((r) => r.slot)).toEqual([5]);
    expect(k.getPrivileges(0, p.endpoint)).toEqual(before);
  });

  it('works only on bound, local endpoints', () => {
    const k = setup();
    k.bindRemote(0, 3, 1);
    const priv: Privileges = { level: 'user', allowedCalls: [], ipcTo: 'all' };
    expect(codeOf(() => k.getPrivileges(0, 3))).toBe('EDVSRMTPROC');
    expect(codeOf(() => k.setPrivileges(0, 3, priv))).toBe('EDVSRMTPROC');
    expect(codeOf(() => k.getPrivileges(0, 4))).toBe('EDVSNOTBIND');
    expect(codeOf(() => k.setPrivileges(0, ANY, priv))).toBe('EDVSENDPOINT');
  });
});

describe('A7: EDVSBADCALL', { timeout: 2000 }, () => {
  it('is returned for each call removed from allowedCalls', async () => {
    const k = setup();
    const p = k.bind(0, { slot: 5 });
    const peer = k.bind(0, { slot: 6 });
    const restrict = (call: IpcCall): Process => {
      k.setPrivileges(0, p.endpoint, { level: 'server', allowedCalls: without(call), ipcTo: 'all' });
      return p;
    };
    const bad = { code: 'EDVSBADCALL', errno: -102 };
    await expect(restrict('send').send(peer.endpoint, { type: 1 }, T)).rejects.toMatchObject(bad);
    await expect(restrict('receive').receive(ANY, T)).rejects.toMatchObject(bad);
    await expect(restrict('sendrec').sendrec(peer.endpoint, { type: 1 }, T)).rejects.toMatchObject(bad);
    await expect(restrict('receiveRequest').receiveRequest(T)).rejects.toMatchObject(bad);
    await expect(restrict('reply').reply(peer.endpoint, { type: 1 })).rejects.toMatchObject(bad);
    await expect(restrict('notify').notify(peer.endpoint)).rejects.toMatchObject(bad);
    expect(codeOf(() => restrict('grant').grant(new Uint8Array(1), { grantee: ANY, access: 'read' }))).toBe('EDVSBADCALL');
    await expect(restrict('copy').copyFrom({ owner: peer.endpoint, grant: 1 }, new Uint8Array(1), T)).rejects.toMatchObject(bad);
    await expect(p.copyTo({ owner: peer.endpoint, grant: 1 }, new Uint8Array(1), T)).rejects.toMatchObject(bad);
    await expect(p.copy({ owner: peer.endpoint, grant: 1 }, { owner: peer.endpoint, grant: 2 }, 1, T)).rejects.toMatchObject(bad);
    // Nothing reached the peer.
    await expect(peer.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('takes effect at once and is lifted by restoring the call', async () => {
    const k = setup();
    const p = k.bind(0);
    const peer = k.bind(0);
    k.setPrivileges(0, p.endpoint, { level: 'user', allowedCalls: ['receive'], ipcTo: 'all' });
    await expect(p.send(peer.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSBADCALL' });
    k.setPrivileges(0, p.endpoint, { level: 'user', allowedCalls: ['send'], ipcTo: 'all' });
    const r = track(peer.receive(ANY, T));
    await p.send(peer.endpoint, { type: 2 }, T);
    await expect(r).resolves.toMatchObject({ source: p.endpoint, type: 2 });
  });
});

describe('A7: EDVSTRAPDENIED', { timeout: 2000 }, () => {
  it('restricts sends to system slots outside ipcTo; user slots stay reachable', async () => {
    const k = setup();
    const fs = k.bind(0, { slot: 1 });
    const pm = k.bind(0, { slot: 0 });
    const systask = k.bind(0, { slot: -2 });
    const other = k.bind(0);
    const user = k.bind(0, { privileges: { level: 'user', allowedCalls: ['send', 'sendrec', 'receive'], ipcTo: [1] } });
    const denied = { code: 'EDVSTRAPDENIED', errno: -110 };
    await expect(user.send(pm.endpoint, { type: 1 }, T)).rejects.toMatchObject(denied);
    await expect(user.sendrec(pm.endpoint, { type: 1 }, T)).rejects.toMatchObject(denied);
    await expect(user.send(systask.endpoint, { type: 1 }, T)).rejects.toMatchObject(denied);
    // Allowed system slot.
    const r1 = track(fs.receive(ANY, T));
    await user.send(fs.endpoint, { type: 2 }, T);
    await expect(r1).resolves.toMatchObject({ source: user.endpoint, type: 2 });
    // User slots are not restricted by ipcTo.
    const r2 = track(other.receive(ANY, T));
    await user.send(other.endpoint, { type: 3 }, T);
    await expect(r2).resolves.toMatchObject({ source: user.endpoint, type: 3 });
    await expect(pm.receive(ANY, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'EDVSTIMEDOUT' });
  });

  it('an empty ipcTo denies every system slot, "all" none', async () => {
    const k = setup();
    const pm = k.bind(0, { slot: 0 });
    const p = k.bind(0, { slot: 5 });
    k.setPrivileges(0, p.endpoint, { level: 'server', allowedCalls: [...IPC_CALLS], ipcTo: [] });
    await expect(p.send(pm.endpoint, { type: 1 }, T)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
    await expect(p.notify(pm.endpoint)).rejects.toMatchObject({ code: 'EDVSTRAPDENIED' });
    k.setPrivileges(0, p.endpoint, { level: 'server', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    await expect(p.notify(pm.endpoint)).resolves.toBe('pending');
  });

  it('reserves receiveRequest, reply and notify for system processes, whatever a user is allowed', async () => {
    const k = setup();
    const server = k.bind(0, { slot: 1 });
    const user = k.bind(0);
    const denied = { code: 'EDVSTRAPDENIED' };
    await expect(user.receiveRequest(T)).rejects.toMatchObject(denied);
    await expect(user.reply(server.endpoint, { type: 0 })).rejects.toMatchObject(denied);
    await expect(user.notify(server.endpoint)).rejects.toMatchObject(denied);
    k.setPrivileges(0, user.endpoint, { level: 'system', allowedCalls: [...IPC_CALLS], ipcTo: 'all' });
    await expect(user.receiveRequest(T)).rejects.toMatchObject(denied);
    await expect(user.reply(server.endpoint, { type: 0 })).rejects.toMatchObject(denied);
    await expect(user.notify(server.endpoint)).rejects.toMatchObject(denied);
    // The user can still do what users do.
    const r = track(server.receive(ANY, T));
    await user.send(server.endpoint, { type: 8 }, T);
    await expect(r).resolves.toMatchObject({ type: 8 });
  });
});
