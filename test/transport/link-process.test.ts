/**
 * Two real OS processes: this one and a child running a LinkManager from the built code
 * (test/transport/fixtures/link-node.mjs, dist/ compiled by the global setup). The child echoes
 * every frame; a SIGKILL is detected as 'down', and a restarted child is 'up' with a new incarnation.
 * Crash detection (docs/link-protocol.md, "Crash detection"): a SIGKILLed peer is down long before
 * deadMs on the dialing and on the accepting side; a SIGSTOPped one gets the full deadMs, and one
 * continued before it resumes its session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { KernelFrame } from '../../src/kernel/frames.js';
import { Harness, KEY, notify, waitFor, type TestNode } from './helpers.js';

/** Two OS processes compete for the CPU with the rest of the suite: timers with room to spare. */
const TIMING = { heartbeatMs: 100, suspectMs: 1000, deadMs: 3000, reconnectMs: 20, handshakeMs: 3000 };

const h = new Harness();
const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  await h.closeAll();
});

const FIXTURE = fileURLToPath(new URL('./fixtures/link-node.mjs', import.meta.url));

interface Child {
  readonly proc: ChildProcess;
  readonly events: Record<string, unknown>[];
  readonly port: number;
  send(cmd: object): void;
}

async function startChild(nodeId: number, incarnation: number, timing: object = TIMING): Promise<Child> {
  const proc = spawn(process.execPath, [FIXTURE, JSON.stringify({ nodeId, incarnation, keyHex: KEY.toString('hex'), timing })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(proc);
  const events: Record<string, unknown>[] = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => events.push(JSON.parse(line) as Record<string, unknown>));
  proc.stdin!.on('error', () => {});
  let exited: number | null | undefined;
  proc.on('exit', (code) => (exited = code));
  await waitFor(() => events.some((e) => e.ev === 'listening') || exited !== undefined, `child ${nodeId} listening`, 20_000);
  if (exited !== undefined) throw new Error(`child ${nodeId} exited with ${String(exited)} before listening`);
  const port = events.find((e) => e.ev === 'listening')!.port as number;
  return { proc, events, port, send: (cmd) => proc.stdin!.write(`${JSON.stringify(cmd)}\n`) };
}

describe('links between two OS processes', () => {
  it('echo, kill -9 detected as down, restart seen as up with a new incarnation', { timeout: 90_000 }, async () => {
    const a = await h.node(1, { timing: TIMING });
    const inc1 = Date.now() * 1000;
    const child = await startChild(2, inc1);
    child.send({ cmd: 'peers', peers: [{ nodeId: 1, host: '127.0.0.1', port: a.port }] });
    a.lm.setPeers([{ nodeId: 2, host: '127.0.0.1', port: child.port }]);
    await waitFor(() => a.lm.peerState(2)?.state === 'up', 'link to the child up', 20_000);
    expect(a.reports[0]).toMatchObject({ node: 2, state: 'up', inc: inc1 });

    const N = 10_000;
    for (let i = 0; i < N; i++) {
      a.lm.send(2, notify(i));
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => a.frames.length >= N || a.reports.some((r) => r.state === 'down'), 'echoes', 30_000);
    expect(a.reports.filter((r) => r.state === 'down')).toEqual([]);
    const got = a.frames.map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg);
    expect(got).toEqual([...Array(N).keys()]);

    child.proc.kill('SIGKILL');
    await waitFor(() => a.reports.some((r) => r.state === 'down'), 'child down', 20_000);
    expect(a.reports.find((r) => r.state === 'down')).toMatchObject({ node: 2, inc: inc1 });

    const inc2 = inc1 + 1;
    const child2 = await startChild(2, inc2);
    child2.send({ cmd: 'peers', peers: [{ nodeId: 1, host: '127.0.0.1', port: a.port }] });
    a.lm.setPeers([{ nodeId: 2, host: '127.0.0.1', port: child2.port }]);
    await waitFor(() => a.reports[a.reports.length - 1]?.state === 'up', 'restarted child up', 20_000);
    expect(a.reports[a.reports.length - 1]).toMatchObject({ node: 2, state: 'up', inc: inc2 });
    a.frames.length = 0;
    a.lm.send(2, notify(-5));
    await waitFor(() => a.frames.length === 1, 'echo from the restarted child');
    expect(a.frames[0]!.frame).toEqual(notify(-5));
    await waitFor(() => child2.events.some((e) => e.ev === 'peer' && e.state === 'up' && e.inc === a.incarnation), 'child saw us up');
  });
});

/** A long dead timer: a crash must be recognised long before it. */
const KILL_TIMING = { ...TIMING, deadMs: 20_000 };
/** A frozen peer must wait out the whole of it. */
const STOP_TIMING = { ...TIMING, deadMs: 6000 };

type Side = 'dialing' | 'accepting';

/** This process as node 1 (it dials node 2) or as node 2 (node 1 dials it), linked with a child as the other. */
async function linkedChild(side: Side, timing: typeof TIMING): Promise<{ a: TestNode; child: Child; childId: number }> {
  const [me, childId] = side === 'dialing' ? [1, 2] : [2, 1];
  const a = await h.node(me, { timing });
  const child = await startChild(childId, Date.now() * 1000 + me, timing);
  child.send({ cmd: 'peers', peers: [{ nodeId: me, host: '127.0.0.1', port: a.port }] });
  a.lm.setPeers([{ nodeId: childId, host: '127.0.0.1', port: child.port }]);
  await waitFor(() => a.lm.peerState(childId)?.state === 'up', 'link to the child up', 20_000);
  return { a, child, childId };
}

describe('crash detection', () => {
  it.each<Side>(['dialing', 'accepting'])('the %s side reports a SIGKILLed peer down well before deadMs', { timeout: 60_000 }, async (side) => {
    const { a, child, childId } = await linkedChild(side, KILL_TIMING);
    const killedAt = Date.now();
    child.proc.kill('SIGKILL');
    await waitFor(() => a.reports.some((r) => r.state === 'down'), 'child down', KILL_TIMING.deadMs);
    // Its connection reset, then its listener refused us: within half of deadMs, far sooner in fact.
    expect(a.reports.find((r) => r.state === 'down')!.at - killedAt).toBeLessThan(KILL_TIMING.deadMs / 2);
    expect(a.lm.peerState(childId)!.connectsRefused).toBeGreaterThanOrEqual(3);
  });

  it.each<Side>(['dialing', 'accepting'])('the %s side gives a SIGSTOPped peer the full deadMs', { timeout: 60_000 }, async (side) => {
    const { a, child, childId } = await linkedChild(side, STOP_TIMING);
    const stoppedAt = Date.now();
    child.proc.kill('SIGSTOP');
    await waitFor(() => a.reports.some((r) => r.state === 'suspect'), 'child suspect', STOP_TIMING.deadMs);
    // Halfway to deadMs: still suspect, not down (nothing refused: a stopped process's port still accepts).
    await waitFor(() => Date.now() - stoppedAt >= STOP_TIMING.deadMs / 2 || a.reports.some((r) => r.state === 'down'), 'halfway to deadMs', STOP_TIMING.deadMs);
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect']);
    expect(a.lm.peerState(childId)!.state).toBe('suspect');
    expect(a.lm.peerState(childId)!.connectsRefused).toBe(0);
    await waitFor(() => a.reports.some((r) => r.state === 'down'), 'child down', 2 * STOP_TIMING.deadMs);
    // Down once deadMs of silence passed: silence began at the last ping heard, up to a heartbeat
    // before the stop, and the check runs every few ms.
    expect(a.reports.find((r) => r.state === 'down')!.at - stoppedAt).toBeGreaterThanOrEqual(STOP_TIMING.deadMs - 2 * STOP_TIMING.heartbeatMs);
  });

  it.each<Side>(['dialing', 'accepting'])('the %s side resumes the link with a peer continued before deadMs', { timeout: 60_000 }, async (side) => {
    const { a, child, childId } = await linkedChild(side, STOP_TIMING);
    child.proc.kill('SIGSTOP');
    await waitFor(() => a.reports.some((r) => r.state === 'suspect'), 'child suspect', STOP_TIMING.deadMs);
    for (let i = 0; i < 100; i++) a.lm.send(childId, notify(i));
    child.proc.kill('SIGCONT');
    await waitFor(() => a.reports[a.reports.length - 1]!.state === 'up', 'up again', STOP_TIMING.deadMs);
    await waitFor(() => a.frames.length >= 100, 'the echoes of what was sent while it was stopped');
    expect(a.frames.map((f) => (f.frame as Extract<KernelFrame, { k: 'notify' }>).arg)).toEqual([...Array(100).keys()]);
    expect(a.reports.map((r) => r.state)).toEqual(['up', 'suspect', 'up']);
  });
});
