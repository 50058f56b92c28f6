/**
 * One real etcd member for the `cluster` bench suite (the minimal part of test/support/etcd.ts,
 * which is not compiled into dist/): Debian's /usr/bin/etcd (`DVS_ETCD_BIN` overrides it) on
 * 127.0.0.1 with free ports, its data directory on tmpfs when there is one, etcd's own default
 * raft timing (heartbeat 100 ms, election 1000 ms) as in a deployment following docs/deploy.md.
 * Every wait is bounded; the process is killed and its directory removed by `stop()`, and also
 * when the bench process exits or is signalled without calling it (`removeOnExit` adds more dirs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const ETCD_BIN = process.env.DVS_ETCD_BIN ?? '/usr/bin/etcd';

export interface EtcdProcess {
  /** `http://127.0.0.1:<client port>`. */
  readonly endpoint: string;
  readonly pid: number | undefined;
  /** SIGKILL and remove the data directory; always resolves. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function cleanUpAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    if (!res.ok) return false;
    const body = (await res.json()) as { health?: unknown };
    return body.health === 'true' || body.health === true;
  } catch {
    return false;
  }
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanUpAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanUpAll();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // the default action from here on
    };
    process.on(sig, onSignal);
  }
}

/** Also removes `dir` when this process ends without cleaning up (a signal, an exit mid-run). */
export function removeOnExit(dir: string): () => void {
  hook();
  dirs.add(dir);
  return () => dirs.delete(dir);
}

async function startOnce(readyTimeoutMs: number): Promise<EtcdProcess> {
  if (!existsSync(ETCD_BIN)) {
    throw new Error(`etcd is not installed: ${ETCD_BIN} is missing (Debian package etcd-server; 'bash scripts/setup.sh' or 'npm test' installs it)`);
  }
  hook();
  const root = existsSync('/dev/shm') ? '/dev/shm' : tmpdir(); // etcd fsyncs every write
  const dir = mkdtempSync(path.join(root, 'dvs-bench-etcd-'));
  dirs.add(dir);
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    ETCD_BIN,
    [
      '--name=bench',
      `--data-dir=${path.join(dir, 'data')}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=bench=${peerUrl}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=dvs-bench-${process.pid}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  let output = '';
  const keep = (d: Buffer): void => {
    output = (output + d.toString()).slice(-8000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    const done = (): void => {
      exited = true;
      live.delete(child);
      resolve();
    };
    child.once('exit', done);
    child.once('error', done);
  });
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGKILL');
    await Promise.race([exit, delay(5000)]);
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  };
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`etcd exited while starting:\n${output}`);
    }
    if (await healthy(endpoint)) return { endpoint, pid: child.pid, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd not healthy within ${readyTimeoutMs} ms:\n${output}`);
    }
    await delay(50);
  }
}

/** Starts one etcd member; a port taken between being picked and bound costs a retry (3 at most). */
export async function startEtcdProcess(readyTimeoutMs = 20_000): Promise<EtcdProcess> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(readyTimeoutMs);
    } catch (err) {
      last = err;
      if (err instanceof Error && err.message.startsWith('etcd is not installed')) throw err;
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}
