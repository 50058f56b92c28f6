/**
 * Test rigs for NWEB: a WebFiles over a temp directory (node:fs/promises), a wrapper that counts
 * and delays calls and records every path it was given, a synthetic big file that costs no disk,
 * and a raw-socket client for what fetch and curl will not send.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WebFileKind, WebFiles, WebStat } from '../../../src/vos/nweb/web-files.js';

/** A site in a temp directory. */
export class FsWebFiles implements WebFiles {
  constructor(readonly root: string) {}

  static async temp(): Promise<FsWebFiles> {
    return new FsWebFiles(await mkdtemp(join(tmpdir(), 'nweb-')));
  }

  async remove(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  private real(path: string): string {
    if (!path.startsWith('/') || path.split('/').includes('..')) throw new Error(`not a site path: ${path}`);
    return join(this.root, path);
  }

  async stat(path: string): Promise<WebStat | undefined> {
    try {
      const s = await stat(this.real(path));
      const kind: WebFileKind = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : 'other';
      return { kind, size: s.size, mtime: s.mtimeMs / 1000, ino: s.ino };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    const fh = await open(this.real(path), 'r');
    try {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  }

  async readdir(path: string): Promise<{ name: string; kind: WebFileKind }[]> {
    const entries = await readdir(this.real(path), { withFileTypes: true });
    return entries.map((e) => ({ name: e.name, kind: e.isFile() ? 'file' : e.isDirectory() ? 'dir' : 'other' }));
  }
}

/** A byte of the synthetic file at `offset` (a pattern a test can check without holding the file). */
export const patternByte = (offset: number): number => (offset * 31 + (offset >>> 8)) & 0xff;

/** One big synthetic file at `/big.bin` (and an empty root directory around it). */
export class GeneratedFiles implements WebFiles {
  constructor(readonly size: number) {}
  async stat(path: string): Promise<WebStat | undefined> {
    if (path === '/') return { kind: 'dir', size: 0, mtime: 1_700_000_000, ino: 1 };
    if (path === '/big.bin') return { kind: 'file', size: this.size, mtime: 1_700_000_000, ino: 2 };
    return undefined;
  }
  async read(_path: string, offset: number, length: number): Promise<Uint8Array> {
    const n = Math.max(0, Math.min(length, this.size - offset));
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = patternByte(offset + i);
    return out;
  }
  async readdir(): Promise<{ name: string; kind: WebFileKind }[]> {
    return [{ name: 'big.bin', kind: 'file' }];
  }
}

/** Counts calls, records paths, optionally delays each call or fails them. */
export class CountingFiles implements WebFiles {
  stats = 0;
  reads = 0;
  readdirs = 0;
  readonly paths: string[] = [];
  delayMs = 0;
  failWith: Error | undefined;

  constructor(private readonly inner: WebFiles) {}

  get calls(): number {
    return this.stats + this.reads + this.readdirs;
  }

  private async gate(path: string): Promise<void> {
    this.paths.push(path);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith !== undefined) throw this.failWith;
  }

  async stat(path: string): Promise<WebStat | undefined> {
    this.stats++;
    await this.gate(path);
    return this.inner.stat(path);
  }
  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    this.reads++;
    await this.gate(path);
    return this.inner.read(path, offset, length);
  }
  async readdir(path: string): Promise<readonly { readonly name: string; readonly kind: WebFileKind }[]> {
    this.readdirs++;
    await this.gate(path);
    return this.inner.readdir(path);
  }
}

/** Poll `cond` until true, at most `timeoutMs` (bounded, so a broken server fails the test instead of hanging). */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A raw TCP client that keeps what it received and whether the server closed. */
export class RawClient {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  closed = false;
  readonly connected: Promise<void>;

  constructor(port: number, opts: { read?: boolean } = {}) {
    this.socket = net.connect(port, '127.0.0.1');
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => undefined);
    if (opts.read === false) this.socket.pause();
    this.socket.on('data', (c: Buffer) => this.chunks.push(c));
    this.socket.on('close', () => (this.closed = true));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.received.toString('latin1');
  }

  /** Wait until the server closes the connection. */
  async untilClosed(timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, 'server to close the socket');
  }

  /** Wait until the received text contains `text` or the server closes. */
  async untilClosedOrText(text: string, timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed || this.text.includes(text), timeoutMs, `text ${JSON.stringify(text)}`);
  }

  /** Wait until `n` complete responses (by Content-Length) have arrived; returns them parsed. */
  async untilResponses(n: number, timeoutMs = 5000): Promise<RawResponse[]> {
    let parsed: RawResponse[] = [];
    await waitFor(() => (parsed = parseResponses(this.received)).length >= n, timeoutMs, `${n} responses`);
    return parsed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** Split a byte stream into responses (each with Content-Length; bodiless for 304 and HEAD-like 0). */
export function parseResponses(data: Buffer, headOnly = false): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = data.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = headOnly || status === 304 ? 0 : Number(headers['content-length'] ?? 0);
    if (data.length < end + 4 + length) break;
    out.push({ status, headers, body: data.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return out;
}

/** One request on its own connection (Connection: close), the whole answer once the server closes. */
export async function rawExchange(port: number, request: string | Buffer, timeoutMs = 5000): Promise<{ text: string; responses: RawResponse[] }> {
  const client = new RawClient(port);
  try {
    client.write(request);
    await client.untilClosed(timeoutMs);
    return { text: client.text, responses: parseResponses(client.received) };
  } finally {
    client.destroy();
  }
}

/** Run /usr/bin/curl; resolves with its stdout (binary-safe) and exit code. */
export function curl(args: readonly string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/usr/bin/curl', ['-s', '--max-time', '10', ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}
