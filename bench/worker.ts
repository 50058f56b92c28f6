/**
 * The bench process and its worker processes (bench/node-host.ts, bench/ipc-client.ts) talk in
 * line-delimited JSON: the worker prints `{"event":"ready", ...}` once started, then answers each
 * command `{id, cmd, args}` read on stdin with `{id, ok: true, result}` or `{id, ok: false, error}`
 * on stdout. A worker whose stdin closes (the bench process went away) cleans up and exits.
 * Also the measuring loops and the allocation meter the workers and the suite share.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import type { M3Ipc } from '../src/ipc/calls.js';
import { ANY, type Endpoint } from '../src/ipc/endpoint.js';
import { DvsError } from '../src/ipc/errors.js';
import type { Message, OutgoingMessage } from '../src/ipc/message.js';

export type Args = Record<string, unknown>;
export type Handler = (args: Args) => unknown;

// ---------------------------------------------------------------- worker side

/** Prints one protocol line on stdout. */
export function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function describe(err: unknown): string {
  if (err instanceof Error) return (err as Error & { code?: string }).code !== undefined ? `${(err as Error & { code?: string }).code}: ${err.message}` : err.message;
  return String(err);
}

/**
 * With `DVS_BENCH_HEAP_PROF=<dir>`: samples this process's JS-heap allocations from now on,
 * short-lived objects included (V8's default sampling reports only those still alive at the end,
 * which for a message path is almost nothing). Returns what writes the profile
 * (`<dir>/<script>-<pid>.heapprofile`, opened by Chrome DevTools' Memory tab).
 */
async function startHeapSampling(): Promise<(() => Promise<void>) | undefined> {
  const dir = process.env.DVS_BENCH_HEAP_PROF;
  if (dir === undefined || dir === '') return undefined;
  const session = new Session();
  session.connect();
  // Not in @types/node's protocol types, but in V8's HeapProfiler.startSampling since V8 9.x.
  const params = { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true };
  await session.post('HeapProfiler.startSampling', params as { samplingInterval: number });
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${path.basename(process.argv[1] ?? 'worker', '.js')}-${process.pid}.heapprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}

let heapProfile: Promise<(() => Promise<void>) | undefined> | undefined;

/** Ends the worker process, writing its heap profile first if one is being taken. */
export function exitWorker(): void {
  void Promise.resolve(heapProfile)
    .then(async (write) => write?.())
    .catch((err: unknown) => process.stderr.write(`heap profile not written: ${describe(err)}\n`))
    .finally(() => process.exit(0));
}

/** Serves commands from stdin until it closes or SIGTERM arrives; then runs `onEnd` and exits. */
export function serveCommands(handlers: Record<string, Handler>, onEnd: () => Promise<void> | void): void {
  heapProfile = startHeapSampling();
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let msg: { id?: number; cmd?: string; args?: Args };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    const { id, cmd } = msg;
    const handler = cmd === undefined ? undefined : handlers[cmd];
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${String(cmd)}`);
        return handler(msg.args ?? {});
      })
      .then(
        (result) => emit({ id, ok: true, result: result ?? null }),
        (err: unknown) => emit({ id, ok: false, error: describe(err) }),
      );
  });
  const end = (): void => {
    void Promise.resolve()
      .then(onEnd)
      .catch(() => undefined)
      .finally(exitWorker);
  };
  rl.on('close', end);
  process.on('SIGTERM', end);
}

export function num(args: Args, name: string, fallback?: number): number {
  const v = args[name] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`argument ${name} must be a number`);
  return v;
}

// ---------------------------------------------------------------- bench side

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A worker process seen from the bench process. */
export class Worker {
  readonly name: string;
  readonly child: ChildProcess;
  /** The fields of the worker's ready line. */
  ready: Args = {};
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited = false;
  private readonly exitPromise: Promise<void>;

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    this.exitPromise = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, signal) => {
      this.exited = true;
      const err = new Error(`${name} exited (${code ?? signal})`);
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      this.pending.clear();
    });
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (line.trim() !== '') process.stderr.write(`[${name}] ${line}\n`);
    });
  }

  /** Spawns `node [nodeArgs] script [args]` and waits for its ready line. */
  static start(name: string, script: string, args: string[], opts: { nodeArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<Worker> {
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const w = new Worker(name, child);
    const lines = createInterface({ input: child.stdout! });
    return new Promise<Worker>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${name} did not start within ${opts.readyTimeoutMs ?? 20_000} ms`));
      }, opts.readyTimeoutMs ?? 20_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited during start (${code ?? signal})`));
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      lines.on('line', (line) => {
        let msg: Args;
        try {
          msg = JSON.parse(line) as Args;
        } catch {
          process.stderr.write(`[${name}] ${line}\n`);
          return;
        }
        if (msg.event === 'ready') {
          clearTimeout(timer);
          w.ready = msg;
          resolve(w);
          return;
        }
        const p = typeof msg.id === 'number' ? w.pending.get(msg.id) : undefined;
        if (p === undefined) return;
        w.pending.delete(msg.id as number);
        clearTimeout(p.timer);
        if (msg.ok === true) p.resolve(msg.result);
        else p.reject(new Error(`${name} ${String(msg.error)}`));
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends a command and waits for its answer, at most `timeoutMs`. */
  request<T = unknown>(cmd: string, args: Args = {}, timeoutMs = 60_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.stdin!.write(JSON.stringify({ id, cmd, args }) + '\n');
    });
  }

  /** Asks the worker to stop (command `stop`), then SIGTERM, then SIGKILL; always resolves. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.exited) return;
    const exited = (ms: number): Promise<boolean> =>
      Promise.race([this.exitPromise.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    await this.request('stop', {}, timeoutMs).catch(() => undefined);
    if (await exited(timeoutMs / 2)) return;
    this.child.kill('SIGTERM');
    if (await exited(timeoutMs / 2)) return;
    this.child.kill('SIGKILL');
    await exited(2000);
  }
}

// ---------------------------------------------------------------- measuring loops

export interface SendrecRun {
  readonly opsPerSec: number;
  /** Per-call latency in µs, in call order. */
  readonly samples: number[];
}

/** `n` sequential sendrecs to `dst`, each timed. */
/**
 * A server loop answering every request with its own payload: each step replies and receives the
 * next request in one call (replyAndReceive). A reply that fails (the client gave up) is skipped.
 */
export function serveEcho(p: M3Ipc): void {
  void (async () => {
    let m: Message;
    try {
      m = await p.receiveRequest();
    } catch {
      return; // unbound or disconnected
    }
    for (;;) {
      try {
        m = await p.replyAndReceive(m.source, { type: 1, payload: m.payload });
      } catch (err) {
        if (!(err instanceof DvsError) || err.code !== 'EDVSPROCSTS') return;
        try {
          m = await p.receiveRequest();
        } catch {
          return;
        }
      }
    }
  })();
}

export async function timedSendrecs(p: M3Ipc, dst: Endpoint, msg: OutgoingMessage, n: number): Promise<SendrecRun> {
  const samples = new Float64Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await p.sendrec(dst, msg);
    samples[i] = (performance.now() - s) * 1000;
  }
  const ms = performance.now() - t0;
  return { opsPerSec: (n / ms) * 1000, samples: Array.from(samples, (v) => Math.round(v * 100) / 100) };
}

/**
 * One sender keeping up to `window` sends to `dst` in flight until `count` were taken by the
 * receiver (a send resolves once the receiver took the message).
 */
export function pipelinedSends(p: M3Ipc, dst: Endpoint, msg: OutgoingMessage, count: number, window: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let issued = 0;
    let done = 0;
    let failed = false;
    const onDone = (): void => {
      done++;
      if (done === count) resolve();
      else if (issued < count) {
        issued++;
        p.send(dst, msg).then(onDone, onError);
      }
    };
    const onError = (err: unknown): void => {
      if (failed) return;
      failed = true;
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    if (count === 0) resolve();
    while (issued < Math.min(window, count)) {
      issued++;
      p.send(dst, msg).then(onDone, onError);
    }
  });
}

/**
 * An estimate of the JS heap bytes allocated between `start` and `stop` in this process: heap
 * growth plus what every GC in between freed (v8.GCProfiler), after a forced GC at the start.
 * Buffer and ArrayBuffer contents live outside the JS heap and are not counted.
 */
export class AllocMeter {
  private profiler: v8.GCProfiler | undefined;
  private before = 0;

  static available(): boolean {
    return typeof (globalThis as { gc?: () => void }).gc === 'function' && typeof v8.GCProfiler === 'function';
  }

  start(): void {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) throw new Error('run node with --expose-gc to measure allocations');
    gc();
    this.profiler = new v8.GCProfiler();
    this.before = v8.getHeapStatistics().used_heap_size;
    this.profiler.start();
  }

  /** Bytes allocated since start (estimate), bytes retained after a forced GC, GCs seen. */
  stop(): { allocated: number; retained: number; gcs: number } {
    const after = v8.getHeapStatistics().used_heap_size;
    const data = this.profiler?.stop() as { statistics: { beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }[] } | undefined;
    this.profiler = undefined;
    let freed = 0;
    for (const s of data?.statistics ?? []) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    (globalThis as { gc?: () => void }).gc?.();
    const retained = v8.getHeapStatistics().used_heap_size - this.before;
    return { allocated: after - this.before + freed, retained, gcs: data?.statistics.length ?? 0 };
  }
}

/**
 * Endpoints a bench host binds for its roles, by role name: bound once, bound again if unbound.
 * `bind` is the host's way to bind (a daemon-hosted or a client-library process).
 */
export class RoleCache<P extends { readonly bound: boolean }> {
  readonly byName = new Map<string, P>();

  constructor(private readonly bind: (dcid: number, opts: { slot?: number; name: string }) => Promise<P>) {}

  async get(name: string, dcid: number, slot?: number): Promise<P> {
    let p = this.byName.get(name);
    if (p === undefined || !p.bound) {
      p = await this.bind(dcid, { ...(slot === undefined ? {} : { slot }), name: name.slice(0, 32) });
      this.byName.set(name, p);
    }
    return p;
  }
}

/**
 * The two ends of a bulk copy, for a daemon-hosted process or a client process alike: the owner
 * grants random bytes to the copier and blocks in sendrec with it; the copier copies the whole grant
 * (checking its SHA-256 once) and reports MB/s (10^6 bytes), then releases the owner.
 */
export function bulkHandlers(roles: RoleCache<M3Ipc & { readonly endpoint: Endpoint; readonly bound: boolean }>): Record<string, (a: Args) => unknown> {
  const bulk: {
    owner?: { reply: Promise<Message>; proc: M3Ipc; grant: number };
    request?: Promise<Message>;
    into?: Buffer;
    verified?: boolean;
  } = {};
  return {
    /** Owner side of a bulk copy: grants `bytes` of random data to `dst` and blocks in sendrec with it. */
    bulkOwner: async (a) => {
      const dst: Endpoint = num(a, 'dst');
      const bytes = num(a, 'bytes');
      const p = await roles.get('bulk-owner', num(a, 'dcid'));
      const buffer = Buffer.allocUnsafe(bytes);
      randomFillSync(buffer);
      const grant = p.grant(buffer, { grantee: dst, access: 'read' });
      const sha256 = createHash('sha256').update(buffer).digest('hex');
      const reply = p.sendrec(dst, { type: 5, payload: { grant, bytes, sha256 } });
      reply.catch(() => undefined);
      bulk.owner = { reply, proc: p, grant };
      return { endpoint: p.endpoint, grant };
    },
    bulkOwnerWait: async () => {
      const owner = bulk.owner;
      if (owner === undefined) throw new Error('no bulk owner');
      const m = await owner.reply;
      owner.proc.revoke(owner.grant);
      bulk.owner = undefined;
      return m.type;
    },

    /** Copier side: binds a server endpoint that waits for the owner's request. */
    bulkCopier: async (a) => {
      const p = await roles.get(`copier${num(a, 'slot')}`, num(a, 'dcid'), num(a, 'slot'));
      bulk.request = p.receive(ANY);
      bulk.request.catch(() => undefined);
      return p.endpoint;
    },
    /**
     * `times` copies (1 by default) of the whole grant from the owner blocked in sendrec with us,
     * back to back; MB/s (10^6 bytes) over all of them. The first copy ever is checked against
     * the owner's checksum.
     */
    bulkCopy: async (a) => {
      const p = roles.byName.get(`copier${num(a, 'slot')}`);
      if (p === undefined || bulk.request === undefined) throw new Error('no bulk copier');
      const m = await bulk.request;
      const { grant, bytes, sha256 } = m.payload as { grant: number; bytes: number; sha256: string };
      const times = a.times === undefined ? 1 : num(a, 'times');
      bulk.into ??= Buffer.alloc(bytes);
      let ms = 0;
      for (let i = 0; i < times; i++) {
        const t0 = performance.now();
        await p.copyFrom({ owner: m.source, grant }, bulk.into, { timeoutMs: 120_000 });
        ms += performance.now() - t0;
        if (bulk.verified !== true) {
          const got = createHash('sha256').update(bulk.into).digest('hex');
          if (got !== sha256) throw new Error('bulk copy delivered different bytes');
          bulk.verified = true;
          bulk.into.fill(0);
        }
      }
      return { mbPerSec: (bytes * times) / 1e6 / (ms / 1000), ms };
    },
    bulkRelease: async (a) => {
      const p = roles.byName.get(`copier${num(a, 'slot')}`);
      const m = await bulk.request;
      if (p === undefined || m === undefined) throw new Error('no bulk request');
      await p.reply(m.source, { type: 0 });
      bulk.request = undefined;
      bulk.into = undefined;
      return null;
    },
  };
}
