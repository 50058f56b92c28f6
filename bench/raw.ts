/** Raw Node socket baselines for the `ipc` suite: the same traffic shapes with nothing of DVS in between. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export interface RawPeer {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts bench/raw-peer.js as its own OS process and waits for "ready". */
export function startRawPeer(mode: 'echo' | 'sink' | 'relay', where: string, target?: string): Promise<RawPeer> {
  const script = fileURLToPath(new URL('./raw-peer.js', import.meta.url));
  const child = spawn(process.execPath, [script, mode, where, ...(target === undefined ? [] : [target])], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('raw peer did not start')), 10_000);
    child.stdout!.once('data', () => {
      clearTimeout(timer);
      resolve({
        child,
        stop: () =>
          new Promise<void>((done) => {
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
    child.once('error', reject);
  });
}

function connect(opts: net.NetConnectOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(opts, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** A 4-byte-length-prefixed frame of `bytes` body bytes. */
export function rawFrame(bytes: number): Buffer {
  const f = Buffer.alloc(4 + bytes, 0x5a);
  f.writeUInt32BE(bytes, 0);
  return f;
}

/** Round trips of one frame against an echo peer; returns per-call latencies in µs (unsorted) and ops/s. */
export async function rawPingPong(opts: net.NetConnectOpts, n: number, bodyBytes: number): Promise<{ opsPerSec: number; samples: Float64Array }> {
  const socket = await connect(opts);
  const frame = rawFrame(bodyBytes);
  const samples = new Float64Array(n);
  let received = 0;
  let need = frame.byteLength;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.byteLength;
    if (received >= need) wake?.();
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await new Promise<void>((resolve) => {
      wake = resolve;
      socket.write(frame);
    });
    need += frame.byteLength;
    samples[i] = (performance.now() - s) * 1000;
  }
  const total = performance.now() - t0;
  socket.destroy();
  return { opsPerSec: (n / total) * 1000, samples };
}

async function report(socket: net.Socket): Promise<{ count: number; bytes: number }> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.byteLength >= 16) {
        socket.off('data', onData);
        resolve({ count: buf.readUInt32BE(4), bytes: buf.readDoubleBE(8) });
      }
    };
    socket.on('data', onData);
    const r = Buffer.alloc(10);
    r.writeUInt32BE(6, 0);
    r.write('report', 4);
    socket.write(r);
  });
}

/** One-way frames written as fast as the socket takes them (corked in batches); returns frames/s as counted by the sink. */
export async function rawPipelined(port: number, n: number, bodyBytes: number, batch = 256): Promise<number> {
  const socket = await connect({ host: '127.0.0.1', port });
  const frame = rawFrame(bodyBytes);
  const t0 = performance.now();
  for (let i = 0; i < n; i += batch) {
    socket.cork();
    for (let j = i; j < Math.min(n, i + batch); j++) socket.write(frame);
    socket.uncork();
    if (socket.writableNeedDrain) await new Promise((r) => socket.once('drain', r));
  }
  const { count } = await report(socket);
  const ms = performance.now() - t0;
  socket.destroy();
  if (count !== n) throw new Error(`sink counted ${count} of ${n} frames`);
  return (n / ms) * 1000;
}

/** Bulk transfer of `totalBytes` in `chunk`-byte frames; returns MB/s (10^6 bytes). */
export async function rawBulk(port: number, totalBytes: number, chunk = 64 * 1024): Promise<number> {
  const socket = await connect({ host: '127.0.0.1', port });
  const frame = rawFrame(chunk);
  const frames = Math.ceil(totalBytes / chunk);
  const t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    if (!socket.write(frame)) await new Promise((r) => socket.once('drain', r));
  }
  await report(socket);
  const ms = performance.now() - t0;
  socket.destroy();
  return (frames * chunk) / 1e6 / (ms / 1000);
}
