/**
 * Real etcd processes for tests: Debian's `etcd` (package etcd-server, /usr/bin/etcd; scripts/setup.sh
 * installs it) on 127.0.0.1 with free ports and a temporary data directory per member.
 *
 *   const etcd = await startEtcd();              // one member
 *   const cluster = await startEtcdCluster(3);   // three members (static initial cluster)
 *   cluster.endpoints                            // ['http://127.0.0.1:port', ...]
 *   const leader = await cluster.leader();       // via the Maintenance.Status RPC (etcd3 client)
 *   await leader.stop(); await leader.restart(); // or kill() (SIGKILL)
 *   await cluster.stop();                        // kills every member, removes the directories
 *
 * Every wait is bounded (readiness polls /health), and every process this module started is killed
 * when the test process exits, even if a test forgot `stop()`. A missing /usr/bin/etcd is an error
 * with a clear message, never a skipped test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

export const ETCD_BIN = process.env.DVS_ETCD_BIN ?? '/usr/bin/etcd';

export interface EtcdOptions {
  /** Raft heartbeat and election timeout (ms). Defaults 50 / 500: elections in well under a second. */
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** How long start and restart wait for the member(s) to be healthy. Default 20 s. */
  readonly readyTimeoutMs?: number;
  /** Extra command-line flags for every member. */
  readonly extraArgs?: readonly string[];
}

export interface EtcdMember {
  readonly name: string;
  /** `http://127.0.0.1:<client port>`. */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
  /** SIGKILL (a crash). */
  kill(): Promise<void>;
  /** Starts the member again on the same ports and data directory; resolves once it answers /health. */
  restart(): Promise<void>;
  /** The member's recent output (diagnostics). */
  output(): string;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Client URLs of every member, in member order. */
  readonly endpoints: string[];
  /** The current leader among the running members (waits up to `timeoutMs` for one to be elected). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Compacts the history up to `revision` (physically), so watches from before it fail. */
  compact(revision: number): Promise<void>;
  /** Waits until every running member answers /health. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every member and removes the data directories. */
  stop(): Promise<void>;
}

// ------------------------------------------------------------------ process bookkeeping

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let exitHook = false;

function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/** Kills the etcd processes when this process ends, however it ends (short of SIGKILL). */
function trackExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', killAll);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAll();
      process.removeListener(sig, onSignal);
      // Default action (or the other listeners) from here on.
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function baseDir(): string {
  // tmpfs when there is one: etcd fsyncs every write.
  const shm = '/dev/shm';
  const root = existsSync(shm) ? shm : tmpdir();
  const dir = mkdtempSync(join(root, 'dvs-etcd-'));
  dirs.add(dir);
  return dir;
}

export function checkEtcdBinary(): void {
  if (!existsSync(ETCD_BIN)) {
    throw new Error(
      `etcd is not installed: ${ETCD_BIN} is missing. The etcd tests run real etcd processes from Debian's etcd-server package; ` +
        `install it with 'bash scripts/setup.sh' (npm test does) or 'apt-get install etcd-server' as root.`,
    );
  }
}

async function healthy(endpoint: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return false;
    const body = (await res.json()) as { health?: unknown };
    return body.health === 'true' || body.health === true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ members

class Member implements EtcdMember {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private log: string[] = [];

  constructor(
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly argsFor: (m: Member) => string[],
    private readonly readyTimeoutMs: number,
  ) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  get peerUrl(): string {
    return `http://127.0.0.1:${this.peerPort}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  output(): string {
    return this.log.join('');
  }

  spawn(): void {
    if (this.child !== undefined) throw new Error(`etcd member ${this.name} is already running`);
    trackExit();
    const child = spawn(ETCD_BIN, this.argsFor(this), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    const keep = (chunk: Buffer): void => {
      this.log.push(chunk.toString('utf8'));
      if (this.log.length > 200) this.log = this.log.slice(-100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        if (this.child === child) this.child = undefined;
        this.log.push(`\n[etcd ${this.name} exited: code ${String(code)}, signal ${String(signal)}]\n`);
        resolve();
      });
      child.once('error', (err) => {
        live.delete(child);
        if (this.child === child) this.child = undefined;
        this.log.push(`\n[etcd ${this.name} failed to start: ${err.message}]\n`);
        resolve();
      });
    });
  }

  /** Resolves once /health answers true; throws (with the member's output) after the timeout or if it exits. */
  async waitHealthy(timeoutMs = this.readyTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child === undefined) throw new Error(`etcd member ${this.name} exited while starting:\n${this.tail()}`);
      if (await healthy(this.endpoint, 1000)) return;
      await delay(50);
    }
    throw new Error(`etcd member ${this.name} not healthy within ${timeoutMs} ms:\n${this.tail()}`);
  }

  private tail(): string {
    return this.output().split('\n').slice(-30).join('\n');
  }

  private async signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill(sig);
    const done = await Promise.race([this.exited.then(() => true), delay(graceMs).then(() => false)]);
    if (!done) {
      child.kill('SIGKILL');
      await Promise.race([this.exited, delay(5000)]);
    }
  }

  stop(): Promise<void> {
    return this.signal('SIGTERM', 5000);
  }

  kill(): Promise<void> {
    return this.signal('SIGKILL', 5000);
  }

  async restart(): Promise<void> {
    if (this.child !== undefined) await this.stop();
    this.spawn();
    await this.waitHealthy();
  }
}

class Cluster implements EtcdCluster {
  constructor(
    readonly members: Member[],
    private readonly dir: string,
  ) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  async leader(timeoutMs = 10_000): Promise<EtcdMember> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const m of this.members) {
        if (!m.running) continue;
        const client = new Etcd3({ hosts: m.endpoint });
        try {
          const s = await client.maintenance.status({ deadline: Date.now() + 1000 });
          if (s.leader !== '0' && s.leader === s.header.member_id) return m;
        } catch {
          // not answering: try the next one
        } finally {
          client.close();
        }
      }
      await delay(50);
    }
    throw new Error(`no etcd leader elected within ${timeoutMs} ms`);
  }

  async compact(revision: number): Promise<void> {
    const m = this.members.find((x) => x.running);
    if (m === undefined) throw new Error('no etcd member is running');
    const client = new Etcd3({ hosts: this.members.filter((x) => x.running).map((x) => x.endpoint) });
    try {
      await client.kv.compact({ revision, physical: true }, { deadline: Date.now() + 5000 });
    } finally {
      client.close();
    }
  }

  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    await Promise.all(this.members.filter((m) => m.running).map((m) => m.waitHealthy(timeoutMs)));
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.kill()));
    rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }
}

async function launch(size: number, opts: EtcdOptions): Promise<Cluster> {
  checkEtcdBinary();
  const heartbeat = opts.heartbeatMs ?? 50;
  const election = opts.electionMs ?? 500;
  const readyMs = opts.readyTimeoutMs ?? 20_000;
  const dir = baseDir();
  const token = `dvs-test-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const members: Member[] = [];
  const ports = new Set<number>();
  const port = async (): Promise<number> => {
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      if (!ports.has(p)) {
        ports.add(p);
        return p;
      }
    }
    throw new Error('could not find free ports for etcd');
  };
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const clientPorts: number[] = [];
  const peerPorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await port());
    peerPorts.push(await port());
  }
  const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${peerPorts[i]!}`).join(',');
  const argsFor = (m: Member): string[] => [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--listen-client-urls=${m.endpoint}`,
    `--advertise-client-urls=${m.endpoint}`,
    `--listen-peer-urls=${m.peerUrl}`,
    `--initial-advertise-peer-urls=${m.peerUrl}`,
    `--initial-cluster=${initialCluster}`,
    '--initial-cluster-state=new',
    `--initial-cluster-token=${token}`,
    `--heartbeat-interval=${heartbeat}`,
    `--election-timeout=${election}`,
    '--logger=zap',
    '--log-outputs=stderr',
    '--log-level=warn',
    ...(opts.extraArgs ?? []),
  ];
  for (let i = 0; i < size; i++) members.push(new Member(names[i]!, clientPorts[i]!, peerPorts[i]!, join(dir, names[i]!), argsFor, readyMs));
  const cluster = new Cluster(members, dir);
  try {
    for (const m of members) m.spawn();
    await cluster.waitHealthy(readyMs);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

async function launchWithRetry(size: number, opts: EtcdOptions): Promise<Cluster> {
  // A port picked as free can be taken by someone else before etcd binds it: try again, boundedly.
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(size, opts);
    } catch (err) {
      last = err;
      if (err instanceof Error && err.message.startsWith('etcd is not installed')) throw err;
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}

/** One etcd member. */
export function startEtcd(opts: EtcdOptions = {}): Promise<EtcdCluster> {
  return launchWithRetry(1, opts);
}

/** `size` etcd members forming one cluster. */
export function startEtcdCluster(size = 3, opts: EtcdOptions = {}): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1 || size > 7) throw new Error(`cluster size must be 1..7, got ${size}`);
  return launchWithRetry(size, opts);
}
