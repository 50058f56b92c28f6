/**
 * One daemon per data directory (src/node/data-dir-lock.ts): a second daemon started on a directory
 * in use fails with EDVSADDRINUSE and leaves the first one's files alone; a lock left by a process
 * that died is taken over; a clean stop releases it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DvsError } from '../../src/ipc/errors.js';
import { parseNodeConfig, nodePaths } from '../../src/node/config.js';
import { processAlive } from '../../src/node/data-dir-lock.js';
import { Daemon } from '../../src/node/daemon.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-lock-'));
  await writeFile(path.join(dir, 'cluster.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function config(name: string): ReturnType<typeof parseNodeConfig> {
  return parseNodeConfig({
    nodeId: 0,
    dataDir: path.join(dir, name),
    clusterKeyFile: path.join(dir, 'cluster.key'),
    store: { backend: 'embedded', serve: true, address: '127.0.0.1:0' },
    timing: { heartbeatMs: 200, suspectMs: 600, deadMs: 1500 },
  });
}

const quiet = { logger: pino({ level: 'silent' }) };

describe('the data directory lock', () => {
  it('refuses a second daemon on a directory in use, which keeps its files and keeps serving', async () => {
    const cfg = config('busy');
    const first = await Daemon.start(cfg, quiet);
    try {
      const runtime = await readFile(nodePaths(cfg.dataDir).runtime, 'utf8');
      const err = await Daemon.start(cfg, quiet).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DvsError);
      expect((err as DvsError).code).toBe('EDVSADDRINUSE');
      expect(await readFile(nodePaths(cfg.dataDir).runtime, 'utf8')).toBe(runtime);
      expect(existsSync(nodePaths(cfg.dataDir).socket)).toBe(true);
      await first.clusterDirectory.createDc({ dcid: 4, nodes: [0] });
      await first.waitForDc(4);
    } finally {
      await first.stop();
    }
    expect(existsSync(path.join(cfg.dataDir, 'dvsd.lock'))).toBe(false);
  }, 30_000);

  it('takes over a lock whose process is gone, and releases it on stop', async () => {
    const cfg = config('stale');
    await mkdir(cfg.dataDir, { recursive: true });
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(gone.stdout);
    expect(deadPid).toBeGreaterThan(0);
    await writeFile(path.join(cfg.dataDir, 'dvsd.lock'), `${deadPid}\n`);
    const d = await Daemon.start(cfg, quiet);
    try {
      expect((await readFile(path.join(cfg.dataDir, 'dvsd.lock'), 'utf8')).trim()).toBe(String(process.pid));
    } finally {
      await d.stop();
    }
    expect(existsSync(path.join(cfg.dataDir, 'dvsd.lock'))).toBe(false);
  }, 30_000);

  it('counts a zombie (killed, not yet reaped: a container PID 1 can take seconds) as gone', async () => {
    // `sh` starts a short `sleep` in the background, prints its pid and becomes a long `sleep`, which
    // never reaps it. The child outlives the exec, so the shell cannot reap it first.
    const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 8'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = await new Promise<number>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
      const deadline = Date.now() + 5000;
      const state = (): string => {
        try {
          const stat = readFileSync(`/proc/${zombie}/stat`, 'utf8');
          return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        } catch {
          return '';
        }
      };
      while (state() !== 'Z' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(state()).toBe('Z');
      expect(() => process.kill(zombie, 0)).not.toThrow(); // signals still reach it
      expect(processAlive(zombie)).toBe(false);
      expect(processAlive(process.pid)).toBe(true);
      const cfg = config('zombie');
      await mkdir(cfg.dataDir, { recursive: true });
      await writeFile(path.join(cfg.dataDir, 'dvsd.lock'), `${zombie}\n`);
      const d = await Daemon.start(cfg, quiet);
      await d.stop();
    } finally {
      parent.kill('SIGKILL');
    }
  }, 30_000);
});
