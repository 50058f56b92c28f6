/** Shared harness of the process-protocol tests: a kernel, a ProcServer on a temp socket, clients, raw sockets. */
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectOptions, type DvsClient } from '../../src/client/index.js';
import type { KernelLimits } from '../../src/ipc/limits.js';
import { Kernel } from '../../src/kernel/kernel.js';
import type { ProcInfo } from '../../src/kernel/procfs.js';
import { PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { ProcServer, type ProcServerOptions } from '../../src/node/proc-server.js';
import { createTokenFile } from '../../src/transport/proc-token.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/framing.js';

export const DC = 0;
/** A system slot (servers may receiveRequest/reply/notify). */
export const SERVER_SLOT = 1;

export interface Harness {
  readonly dir: string;
  readonly socketPath: string;
  readonly tokenPath: string;
  readonly token: string;
  readonly kernel: Kernel;
  readonly server: ProcServer;
  connect(opts?: Partial<ConnectOptions>): Promise<DvsClient>;
  raw(): Promise<RawConn>;
  /** A raw connection that already passed hello. */
  rawHello(): Promise<RawConn>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  readonly limits?: Partial<KernelLimits>;
  readonly server?: Partial<Omit<ProcServerOptions, 'kernel' | 'socketPath'>>;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'dvs-pc-'));
  const socketPath = join(dir, 'dvsd.sock');
  const tokenPath = join(dir, 'token');
  const token = await createTokenFile(tokenPath);
  const kernel = new Kernel({ nodeId: 0, clock: systemClock, ...(opts.limits === undefined ? {} : { limits: opts.limits }) });
  kernel.createDc({ dcid: DC });
  const server = new ProcServer({ kernel, socketPath, tokenPath, ...opts.server });
  await server.start();
  const clients: DvsClient[] = [];
  const raws: RawConn[] = [];
  return {
    dir,
    socketPath,
    tokenPath,
    token,
    kernel,
    server,
    async connect(o = {}) {
      const c = await connect({ socketPath, tokenPath, ...o });
      clients.push(c);
      return c;
    },
    async raw() {
      const r = await RawConn.open(socketPath);
      raws.push(r);
      return r;
    },
    async rawHello() {
      const r = await RawConn.open(socketPath);
      raws.push(r);
      r.send({ id: 0, op: 'hello', version: PROC_PROTOCOL_VERSION, token });
      const res = await r.next();
      if (res.ok !== true) throw new Error(`hello refused: ${JSON.stringify(res)}`);
      return r;
    },
    async close() {
      for (const r of raws) r.destroy();
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      kernel.shutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A bare socket speaking frames, for handshake and fuzz tests. */
export class RawConn {
  readonly socket: Socket;
  private readonly decoder = new FrameDecoder({ maxFrameBytes: 64 * 1024 * 1024 });
  private readonly frames: Record<string, unknown>[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of this.decoder.push(chunk)) this.frames.push(f as Record<string, unknown>);
      } catch {
        socket.destroy();
      }
      this.wake();
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static open(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(value: unknown): void {
    this.sendBytes(encodeFrame(value, { maxFrameBytes: 64 * 1024 * 1024 }));
  }

  sendBytes(bytes: Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(bytes);
  }

  /** The next frame from the server; rejects on close or after `ms`. */
  async next(ms = 2000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.shift();
      if (f !== undefined) return f;
      if (this.closed) throw new Error('closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a frame');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The response to request `id`, skipping other frames (kept aside). */
  async response(id: number, ms = 2000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    const skipped: Record<string, unknown>[] = [];
    try {
      for (;;) {
        const f = await this.next(Math.max(1, deadline - Date.now()));
        if (f.id === id) return f;
        skipped.push(f);
      }
    } finally {
      this.frames.unshift(...skipped);
    }
  }

  /** Resolves true once the server closed the socket, false after `ms`. */
  async waitClosed(ms = 3000): Promise<boolean> {
    if (this.closed) return true;
    let t: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closedPromise.then(() => true), new Promise<boolean>((resolve) => (t = setTimeout(() => resolve(false), ms)))]);
    clearTimeout(t);
    return r;
  }

  /** Frames received so far and not consumed. */
  drain(): Record<string, unknown>[] {
    return this.frames.splice(0);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Observes a promise's rejection so it is never unhandled, and returns it. */
export function track<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every few ms until it holds; fails after `ms` (a generous bound: it is waited for, not slept). */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not reached within ${ms} ms`);
    await sleep(5);
  }
}

/** The kernel's row for `endpoint` of DC 0. */
export function rowOf(kernel: Kernel, endpoint: number): ProcInfo | undefined {
  return kernel.procs(DC).find((p) => p.endpoint === endpoint);
}

/** True while `endpoint` is blocked in a receive (receive, receiveRequest, the receive half of sendrec). */
export function isReceiving(kernel: Kernel, endpoint: number): boolean {
  return rowOf(kernel, endpoint)?.flags.includes('RECEIVING') === true;
}

/** Senders queued on `endpoint`. */
export function queuedOn(kernel: Kernel, endpoint: number): number {
  return rowOf(kernel, endpoint)?.queued ?? 0;
}

/** Whether a promise has settled yet, read synchronously; its rejection is observed. */
export function watchSettled(p: Promise<unknown>): { readonly settled: boolean } {
  const state = { settled: false };
  p.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

/** Bytes 0..n-1 of a deterministic pattern. */
export function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Fast byte-exact comparison (deep equality of large typed arrays is slow); names the first difference. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(b)) return 'equal';
  if (a.byteLength !== b.byteLength) return `length ${a.byteLength} != ${b.byteLength}`;
  let i = 0;
  while (a[i] === b[i]) i++;
  return `first difference at byte ${i}: ${a[i]} != ${b[i]}`;
}

/** The client's socket, for tests that pause or cut it. */
export function socketOf(c: DvsClient): Socket {
  return (c as unknown as { socket: Socket }).socket;
}
