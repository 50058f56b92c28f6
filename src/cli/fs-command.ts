/**
 * `dvs cp` and `dvs fs`: the files of a DC's FS from the command line (docs/vos/fs.md, "From the
 * command line"). `cp` moves a file (or, with -r, a tree) into or out of the DC through a node's
 * daemon, each chunk through a grant FS copies from or into, as the original M3FTP did; a progress
 * bar goes to stderr when it is a terminal. `mkfs` and `fsck` work on an image file with Debian's
 * util-linux tools, the format's reference implementation.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readdir, mkdir, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect } from '../client/client.js';
import { Vos } from '../client/vos.js';
import type { VosFiles } from '../client/vos-fs.js';
import { DvsError } from '../ipc/errors.js';
import { readClusterFile, readRuntime } from './cluster-files.js';
import { UnreachableError } from './reach.js';

const run = promisify(execFile);
/** Bytes per request of a copy: large enough that a remote disk costs few round trips per megabyte. */
export const CP_CHUNK = 4 * 1024 * 1024;
/** A path inside the DC is written `dc:/path`. */
export const DC_PREFIX = 'dc:';

export interface FsTarget {
  readonly dir: string;
  readonly dcid: number;
  /** The node whose daemon the calls go through (default: the DC's first node in the cluster). */
  readonly node?: number;
  readonly timeoutMs?: number;
}

/** Runs `fn` with the DC's files, reached through a node's daemon. */
export async function withVosFiles<T>(t: FsTarget, fn: (fs: VosFiles) => Promise<T>): Promise<T> {
  const cluster = readClusterFile(t.dir);
  const entry = t.node === undefined ? cluster.nodes[0] : cluster.nodes.find((n) => n.nodeId === t.node);
  if (entry === undefined) throw new DvsError('EDVSBADNODEID', `node ${String(t.node)} is not in the cluster in ${cluster.dir}`);
  const runtime = readRuntime(entry.dataDir);
  if (runtime === undefined) throw new UnreachableError(`the daemon of node ${entry.nodeId}`, entry.dataDir, 0, 'no daemon runs there');
  const client = await connect({ socketPath: runtime.socket, tokenPath: runtime.token, name: 'dvs-fs', ...(t.timeoutMs === undefined ? {} : { connectTimeoutMs: t.timeoutMs }) });
  try {
    const vos = await Vos.open(client, { dcid: t.dcid, name: 'dvs-fs', ...(t.timeoutMs === undefined ? {} : { timeoutMs: t.timeoutMs }) });
    try {
      return await fn(vos.fs);
    } finally {
      await vos.close();
    }
  } finally {
    await client.close();
  }
}

export interface CopyProgress {
  readonly file: string;
  readonly done: number;
  readonly total: number;
}

export interface CopyResult {
  readonly files: number;
  readonly bytes: number;
  readonly ms: number;
}

function dcPath(p: string): string | undefined {
  return p.startsWith(DC_PREFIX) ? p.slice(DC_PREFIX.length) || '/' : undefined;
}

/** Copies `from` to `to`, exactly one of them `dc:/…`; with `recursive`, a directory and all below it. */
export async function fsCopy(t: FsTarget, from: string, to: string, o: { recursive?: boolean; onProgress?: (p: CopyProgress) => void } = {}): Promise<CopyResult> {
  const src = dcPath(from);
  const dst = dcPath(to);
  if ((src === undefined) === (dst === undefined)) throw new DvsError('EDVSINVAL', `one of the two paths must be in the DC (written ${DC_PREFIX}/path) and the other local`);
  const t0 = performance.now();
  const total = { files: 0, bytes: 0 };
  await withVosFiles(t, async (fs) => {
    if (dst !== undefined) await copyIn(fs, from, await intoDcName(fs, from, dst), o, total);
    else await copyOut(fs, src ?? '/', await intoLocalName(src ?? '/', to), o, total);
  });
  return { ...total, ms: performance.now() - t0 };
}

async function intoDcName(fs: VosFiles, local: string, dst: string): Promise<string> {
  try {
    if ((await fs.stat(dst)).isDirectory()) return path.posix.join(dst, path.basename(local));
  } catch (err) {
    if (!(err instanceof DvsError) || err.code !== 'EDVSNOENT') throw err;
  }
  return dst;
}

async function intoLocalName(src: string, local: string): Promise<string> {
  try {
    if ((await stat(local)).isDirectory()) return path.join(local, path.posix.basename(src) || 'root');
  } catch {
    // A new name.
  }
  return local;
}

async function copyIn(fs: VosFiles, local: string, dst: string, o: { recursive?: boolean; onProgress?: (p: CopyProgress) => void }, total: { files: number; bytes: number }): Promise<void> {
  const s = await stat(local);
  if (s.isDirectory()) {
    if (o.recursive !== true) throw new DvsError('EDVSISDIR', `${local} is a directory (copy it with -r)`);
    await fs.mkdir(dst, { recursive: true });
    for (const name of (await readdir(local)).sort()) await copyIn(fs, path.join(local, name), path.posix.join(dst, name), o, total);
    return;
  }
  const h = await open(local, 'r');
  try {
    const out = await fs.open(dst, 'w');
    await pump(h, out, s.size, (done) => o.onProgress?.({ file: dst, done, total: s.size }), total);
  } finally {
    await h.close();
  }
}

interface Chunked {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<unknown>;
}

/** Chunks of a copy in flight: the next chunk is read while the last one is written. */
const CP_DEPTH = 2;

/** Copies `size` bytes from one handle to the other in CP_CHUNK pieces, CP_DEPTH of them in flight. */
async function pump(from: Chunked, to: Chunked, size: number, progress: (done: number) => void, total: { files: number; bytes: number }): Promise<void> {
  const len = Math.min(CP_CHUNK, Math.max(1, size));
  const bufs = Array.from({ length: CP_DEPTH }, () => Buffer.allocUnsafe(len));
  const reads: Promise<number>[] = [];
  let readAt = 0;
  const issue = (buf: Buffer): void => {
    const p = from.read(buf, 0, len, readAt).then((r) => r.bytesRead);
    p.catch(() => undefined); // awaited in order below; a read after the end's failure must not go unhandled
    reads.push(p);
    readAt += len;
  };
  for (const buf of bufs) issue(buf);
  let done = 0;
  for (let k = 0; ; k++) {
    const bytesRead = (await reads.shift()) ?? 0;
    const buf = bufs[k % CP_DEPTH];
    if (bytesRead === 0 || buf === undefined) break;
    await to.write(buf, 0, bytesRead, done);
    done += bytesRead;
    progress(done);
    if (bytesRead < len) break; // the end of the file came early
    issue(buf);
  }
  total.files++;
  total.bytes += done;
}

async function copyOut(fs: VosFiles, src: string, local: string, o: { recursive?: boolean; onProgress?: (p: CopyProgress) => void }, total: { files: number; bytes: number }): Promise<void> {
  const s = await fs.stat(src);
  if (s.isDirectory()) {
    if (o.recursive !== true) throw new DvsError('EDVSISDIR', `${DC_PREFIX}${src} is a directory (copy it with -r)`);
    await mkdir(local, { recursive: true });
    for (const name of (await fs.readdir(src)).sort()) await copyOut(fs, path.posix.join(src, name), path.join(local, name), o, total);
    return;
  }
  const h = await fs.open(src, 'r');
  const out = await open(local, 'w');
  try {
    await pump(h, out, s.size, (done) => o.onProgress?.({ file: src, done, total: s.size }), total);
  } finally {
    await out.close();
  }
}

/** A one-line progress bar, redrawn in place. */
export function progressBar(write: (s: string) => void, width = 30): (p: CopyProgress) => void {
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (p.done < p.total && now - last < 100) return;
    last = now;
    const frac = p.total === 0 ? 1 : p.done / p.total;
    const fill = Math.round(frac * width);
    const mib = (n: number): string => (n / (1024 * 1024)).toFixed(1);
    write(`\r${p.file.slice(-32).padEnd(32)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mib(p.done)}/${mib(p.total)} MiB${p.done >= p.total ? '\n' : ''}`);
  };
}

/** `ls -l`-like lines for a directory (or one file). */
export async function fsList(fs: VosFiles, p: string): Promise<string[]> {
  const s = await fs.stat(p);
  const rows = s.isDirectory() ? await Promise.all((await fs.readdir(p)).sort().map(async (name) => [name, await fs.stat(path.posix.join(p, name))] as const)) : [[path.posix.basename(p), s] as const];
  return rows.map(([name, st]) => `${st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : '-'}${(st.mode & 0o777).toString(8).padStart(4, '0')} ${String(st.nlink).padStart(3)} ${String(st.size).padStart(10)} ${st.mtime.toISOString()} ${name}${st.isDirectory() ? '/' : ''}`);
}

/** Makes a MINIX v3 image of `sizeMB` MiB with Debian's mkfs.minix; its report. */
export async function fsMkfs(image: string, sizeMB: number, inodes?: number): Promise<string> {
  const blocks = Math.floor(sizeMB * 1024);
  if (!Number.isInteger(blocks) || blocks < 64) throw new DvsError('EDVSINVAL', `an image must be at least 64 KiB, got ${sizeMB} MiB`);
  const h = await open(image, 'wx').catch((err: NodeJS.ErrnoException) => {
    throw new DvsError(err.code === 'EEXIST' ? 'EDVSEXIST' : 'EDVSIO', `cannot create ${image}: ${err.message} (mkfs makes a new image)`);
  });
  await h.close();
  await truncate(image, blocks * 1024);
  const args = ['-3', ...(inodes === undefined ? [] : ['-i', String(inodes)]), image, String(blocks)];
  const { stdout } = await run(minixTool('mkfs.minix'), args).catch((err: Error) => {
    throw new DvsError('EDVSIO', `mkfs.minix failed: ${err.message}`);
  });
  return stdout.trim();
}

/** Checks an image with Debian's fsck.minix -f: clean, and its report. */
export async function fsFsck(image: string): Promise<{ clean: boolean; report: string }> {
  try {
    const { stdout, stderr } = await run(minixTool('fsck.minix'), ['-f', image]);
    return { clean: true, report: `${stdout}${stderr}`.trim() };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw new DvsError('EDVSNOENT', `fsck.minix could not run: ${e.message} (apt-get install util-linux)`);
    return { clean: false, report: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() };
  }
}

/** util-linux's tool: in /usr/sbin, which a user's PATH may lack. */
function minixTool(name: string): string {
  return existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name;
}
