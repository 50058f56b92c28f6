/**
 * How the client library reads its socket (onread into one reused buffer): against a scripted
 * daemon that speaks first, answers in one write or byte by byte, and sends results with binary
 * fields of every size, nothing is lost and no result changes after a later read.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type DvsClient } from '../../src/client/index.js';
import { PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/framing.js';

const HELLO_RESULT = { version: PROC_PROTOCOL_VERSION, nodeId: 0, maxFrameBytes: 16 << 20, maxCopyBytes: 1 << 20, maxPayloadBytes: 1 << 16, settleMs: 0 };

/** The bytes of the `blob` result for request `n`: `n % 251` repeated, of a size that depends on n. */
function blob(n: number): Buffer {
  return Buffer.alloc((n * 7919) % 150_000, n % 251);
}

interface Script {
  /** Writes each response in pieces of this many bytes (each its own write, spaced by a tick). */
  readonly pieceBytes?: number;
}

let server: net.Server | undefined;
let client: DvsClient | undefined;
let dir: string | undefined;

afterEach(async () => {
  await client?.close().catch(() => undefined);
  client = undefined;
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A daemon stand-in: answers hello before it is asked, then `blob` requests with their bytes. */
async function scriptedDaemon(script: Script): Promise<string> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-reads-'));
  const socketPath = path.join(dir, 'd.sock');
  server = net.createServer((socket) => {
    const send = (bytes: Buffer): void => {
      const piece = script.pieceBytes;
      if (piece === undefined) {
        socket.write(bytes);
        return;
      }
      for (let at = 0; at < bytes.byteLength; at += piece) socket.write(bytes.subarray(at, at + piece));
    };
    // Speaks first: the hello answer may arrive before the client library is ready for it.
    send(encodeFrame({ id: 1, ok: true, result: HELLO_RESULT }));
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      const answers: Buffer[] = [];
      for (const f of decoder.push(chunk) as { id: number; op: string; n?: number }[]) {
        if (f.op === 'blob') answers.push(encodeFrame({ id: f.id, ok: true, result: { n: f.n, bytes: blob(f.n!) } }));
      }
      // Every answer to one read in one write: several frames per chunk, frames across chunks.
      if (answers.length > 0) send(Buffer.concat(answers));
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
  return socketPath;
}

async function blobs(c: DvsClient, from: number, count: number): Promise<void> {
  const results = await Promise.all(Array.from({ length: count }, (_, i) => c.call('blob', { n: from + i }) as Promise<{ n: number; bytes: Uint8Array }>));
  // Checked only once all have arrived: a result pointing into a reused read buffer would have changed.
  for (const [i, r] of results.entries()) {
    expect(r.n).toBe(from + i);
    expect(Buffer.compare(Buffer.from(r.bytes), blob(from + i))).toBe(0);
  }
}

describe('client reads', () => {
  it('keeps what a daemon that speaks first sends, and results of every size intact', async () => {
    const socketPath = await scriptedDaemon({});
    client = await connect({ socketPath, token: 't' });
    expect(client.info.nodeId).toBe(0);
    await blobs(client, 1, 40);
    await blobs(client, 100, 5);
  });

  it('puts results together from writes of a few bytes each', async () => {
    const socketPath = await scriptedDaemon({ pieceBytes: 7 });
    client = await connect({ socketPath, token: 't' });
    await blobs(client, 1, 3);
  });
});
