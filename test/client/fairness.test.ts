/**
 * One connection's burst does not stall the daemon: requests are served in bounded slices per
 * event-loop turn, other connections get their turn between slices, and a connection with a large
 * backlog is not read until it drains. The flooding client is an OS process of its own
 * (fixtures/flood-client.mjs), so the daemon's event loop here does only the daemon's work.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DC, startHarness, type Harness } from './helpers.js';

const FLOOD = fileURLToPath(new URL('./fixtures/flood-client.mjs', import.meta.url));

let h: Harness | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await h?.close();
  h = undefined;
});

/** A fixture process and the JSON lines it prints, one promise per line. */
function spawnFixture(path: string, env: Record<string, string>): { line(n: number): Promise<Record<string, unknown>>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [path], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let out = '';
  let err = '';
  let exited = false;
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      lines.push(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
      out = out.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      for (const w of waiters.splice(0)) w();
      resolve(code);
    }),
  );
  return {
    async line(n) {
      while (lines.length <= n) {
        if (exited) throw new Error(`fixture exited before line ${n}: ${err}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
      return lines[n]!;
    },
    exit,
  };
}

const BURST = 8000;
/** A ping answered later than this means the daemon's event loop was held (peers declare a node down within a few seconds). */
const PING_BOUND_MS = 1000;
const TABLE_ROWS = 40;

describe('process protocol: fairness between connections', { timeout: 60_000 }, () => {
  it(`${BURST} procs requests pipelined in one write: another client's pings are answered throughout, and all ${BURST} in order`, async () => {
    h = await startHarness();
    // A process table of some size, so that each procs answer is real work.
    for (let i = 0; i < TABLE_ROWS; i++) h.kernel.bind(DC, { name: `p${i}` });
    const pinger = await h.connect({ name: 'pinger' });
    const flood = spawnFixture(FLOOD, { DVS_SOCKET: h.socketPath, DVS_TOKEN_PATH: h.tokenPath, DVS_BURST: String(BURST) });
    await flood.line(0);
    let done = false;
    const result = flood.line(1).finally(() => (done = true));
    result.catch(() => undefined);

    let pings = 0;
    let slowest = 0;
    const deadline = Date.now() + 45_000;
    while (!done && Date.now() < deadline) {
      const t0 = Date.now();
      await pinger.ping({ timeoutMs: 20_000 });
      slowest = Math.max(slowest, Date.now() - t0);
      pings++;
    }
    expect(await result).toMatchObject({ answered: BURST, inOrder: true, sizes: [TABLE_ROWS] });
    expect(await flood.exit).toBe(0);
    expect(pings).toBeGreaterThan(0);
    expect(slowest).toBeLessThan(PING_BOUND_MS);
    // The burst was served in slices, with the socket paused while its backlog was large.
    expect(h.server.stats.slicesYielded).toBeGreaterThan(0);
    expect(h.server.stats.readPauses).toBeGreaterThan(0);
  });
});
