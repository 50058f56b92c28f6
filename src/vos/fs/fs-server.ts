/**
 * FS, the DC's file-system server (docs/vos/fs.md): the MINIX v3 file system of an RDISK device,
 * served by message passing. Each request runs as its own task: FS goes back to its receive at once,
 * so a client whose request waits on the disk never blocks the others (the file system's own lock
 * orders what must be ordered), and RDISK's answers come back through the same receive loop. Dirty
 * blocks are written back a moment later; a move carries the ones not yet written, so FS is a
 * movable service that moves only between requests.
 */
import { AbortSwitch, type M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import { DEFAULT_DC_LIMITS, type DcLimits } from '../../ipc/limits.js';
import { isNotification, type Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { decodeValue, encodeValue } from '../../transport/codec.js';
import { RdiskDevice } from '../rdisk/rdisk-device.js';
import { errorReply, okReply, replyQuietly } from '../server-replies.js';
import { Serial } from '../serial.js';
import { SlotPeer } from '../slot-peer.js';
import { FS_MAX_INLINE, parseFsRequest, statPayload, type FileRef, type FsRequest, type FsStatWire } from './fs-messages.js';
import type { BlockDevice } from './block-device.js';
import { MinixFs } from './minix/minix-fs.js';

/** What FS needs of a mounted file system (MinixFs). */
export interface MountedFs {
  stat(path: string): Promise<FsStatWire>;
  statIno(ino: number): Promise<FsStatWire>;
  open(path: string, o: { create?: boolean; exclusive?: boolean; truncate?: boolean; mode?: number }): Promise<FsStatWire>;
  read(ino: number, offset: number, length: number): Promise<Uint8Array>;
  write(ino: number, offset: number, data: Uint8Array): Promise<FsStatWire>;
  append(ino: number, data: Uint8Array): Promise<FsStatWire>;
  truncate(ino: number, size: number): Promise<FsStatWire>;
  mkdir(path: string, mode?: number): Promise<unknown>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, path: string): Promise<unknown>;
  readdir(path: string, o: { after?: string; limit?: number }): Promise<{ entries: { name: string; ino: number; kind: string }[]; next?: string }>;
  statfs(): Promise<{ blockSize: number; blocks: number; freeBlocks: number; inodes: number; freeInodes: number }>;
  sync(): Promise<void>;
  writeBack(): Promise<void>;
  dirtyBlocks(): { block: number; data: Uint8Array }[];
  adoptDirty(list: { block: number; data: Uint8Array }[]): void;
  unmount(): Promise<void>;
}

export interface FsServerOptions {
  /** RDISK's slot in the DC. */
  readonly diskSlot: number;
  readonly limits?: DcLimits;
  /** Block cache budget, bytes. */
  readonly cacheBytes?: number;
  /** How soon dirty blocks are written back, ms. */
  readonly writeBackMs?: number;
  /** How long FS waits for RDISK at start before it fails (and is restarted), ms. */
  readonly diskWaitMs?: number;
  /** The file system over a device (default MinixFs.mount). */
  readonly mount?: (dev: BlockDevice, cacheBytes: number) => Promise<MountedFs>;
}

export interface FsInfo {
  readonly requests: number;
  readonly inFlight: number;
  readonly diskInFlight: number;
}

type Reply = { readonly type: number; readonly payload: Payload };

const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
const DEFAULT_WRITE_BACK_MS = 500;
const DEFAULT_DISK_WAIT_MS = 30_000;
const STATE_VERSION = 1;

export class FsServer implements Service {
  private fs: MountedFs | undefined;
  private device: RdiskDevice | undefined;
  private inFlight = 0;
  private requests = 0;
  private syncing: Promise<void> | undefined;
  private writeBack: NodeJS.Timeout | undefined;
  private restored: { block: number; data: Uint8Array }[] = [];
  /** One copy at a time per endpoint (the kernel's rule): copies of concurrent requests queue here. */
  private readonly copies = new Serial();

  constructor(private readonly opts: FsServerOptions) {}

  info(): FsInfo {
    return { requests: this.requests, inFlight: this.inFlight, diskInFlight: this.device?.inFlight ?? 0 };
  }

  movable(): true | string {
    if (this.inFlight > 0) return `${this.inFlight} request(s) in progress`;
    if (this.syncing !== undefined || (this.device?.inFlight ?? 0) > 0) return 'writing back to the disk';
    return true;
  }

  /** Stopped for good: every unwritten block goes to the disk first. */
  async stop(): Promise<void> {
    await this.sync();
  }

  snapshot(): Uint8Array {
    // No write-back from here until FS serves again: the blocks go with the move.
    this.snapshotted = true;
    const dirty = this.fs?.dirtyBlocks() ?? [];
    return encodeValue({ v: STATE_VERSION, dirty: dirty.map((d) => [d.block, d.data]) });
  }

  restore(state: Uint8Array): void {
    const s = decodeValue(state) as { v?: unknown; dirty?: unknown } | null;
    if (s === null || typeof s !== 'object' || s.v !== STATE_VERSION || !Array.isArray(s.dirty)) throw new DvsError('EDVSBADVALUE', 'FS state: not a version-1 state');
    this.restored = (s.dirty as unknown[]).map((d) => {
      if (!Array.isArray(d) || typeof d[0] !== 'number' || !(d[1] instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'FS state: a dirty block is not [block, bytes]');
      return { block: d[0], data: d[1] };
    });
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    const device = await this.openDevice(ipc, ctx);
    if (device === undefined) return;
    this.device = device;
    // FS's receive loop must run while it mounts: the mount's reads are answered through it.
    const serving = this.serve(ipc, ctx);
    try {
      const cacheBytes = this.opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
      this.fs = await (this.opts.mount ?? ((d, c) => MinixFs.mount(d, { cacheBytes: c })))(device, cacheBytes);
      if (this.restored.length > 0) this.fs.adoptDirty(this.restored);
      this.restored = [];
      this.mounted();
    } catch (err) {
      this.failMount = err instanceof Error ? err : new DvsError('EDVSIO', String(err));
      this.stopServing.abort();
    }
    for (const w of this.mountWaiters.splice(0)) w();
    // A move retires this incarnation without ending its receive: nothing more may reach the disk.
    const retire = (): void => {
      if (this.writeBack !== undefined) clearInterval(this.writeBack);
      device.close();
    };
    ctx.signal.addEventListener('abort', retire, { once: true });
    try {
      await serving;
    } finally {
      ctx.signal.removeEventListener('abort', retire);
      retire();
    }
    if (this.failMount !== undefined) throw this.failMount;
  }

  private failMount: Error | undefined;
  private snapshotted = false;
  private readonly stopServing = new AbortSwitch();
  private readonly mountWaiters: (() => void)[] = [];

  private mounted(): void {
    this.writeBack = setInterval(() => {
      if (!this.snapshotted) void this.sync(false).catch(() => undefined);
    }, this.opts.writeBackMs ?? DEFAULT_WRITE_BACK_MS);
  }

  /** RDISK's device, asked until RDISK answers (it may start after FS); undefined when FS stops first. */
  private async openDevice(ipc: M3Ipc, ctx: ServiceContext): Promise<RdiskDevice | undefined> {
    const peer = new SlotPeer(this.opts.diskSlot, this.opts.limits ?? DEFAULT_DC_LIMITS);
    const until = Date.now() + (this.opts.diskWaitMs ?? DEFAULT_DISK_WAIT_MS);
    let waitMs = 50;
    for (;;) {
      if (ctx.signal.aborted) return undefined;
      try {
        return await RdiskDevice.open(ipc, peer, { timeoutMs: 5_000 });
      } catch (err) {
        if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return undefined;
        if (Date.now() >= until) throw new DvsError('EDVSIO', `FS found no RDISK at slot ${this.opts.diskSlot}: ${(err as Error).message}`, { cause: err });
        await new Promise((r) => setTimeout(r, waitMs));
        waitMs = Math.min(1_000, waitMs * 2);
      }
    }
  }

  private async serve(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    for (;;) {
      if (ctx.signal.aborted || this.failMount !== undefined) return;
      let m: Message;
      try {
        // Not with ctx.signal: a move drains the endpoint while FS is blocked here (see DS).
        // Nor may a move's drain see it: only a failed mount stops this receive.
        m = await ipc.receiveRequest({ signal: this.stopServing });
      } catch (err) {
        if (isDvsError(err, 'EDVSINTR') && this.stopServing.aborted) return;
        if (isDvsError(err, 'EDVSWOKENUP') || isDvsError(err, 'EDVSTIMEDOUT')) continue;
        if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return;
        throw err;
      }
      if (this.device?.deliver(m) === true || isNotification(m)) continue;
      this.snapshotted = false;
      this.requests++;
      this.inFlight++;
      void this.answer(ipc, m).finally(() => this.inFlight--);
    }
  }

  private async answer(ipc: M3Ipc, m: Message): Promise<void> {
    let out: Reply;
    try {
      const req = parseFsRequest(m.type, m.payload);
      const fs = this.fs ?? (await this.whenMounted());
      out = await this.handle(ipc, fs, m.source, req);
    } catch (err) {
      out = errorReply(err);
    }
    await replyQuietly(ipc, m.source, out);
  }

  private whenMounted(): Promise<MountedFs> {
    return new Promise((resolve, reject) => {
      this.mountWaiters.push(() => (this.fs === undefined ? reject(new DvsError('EDVSIO', 'FS could not mount its disk')) : resolve(this.fs)));
    });
  }

  private async handle(ipc: M3Ipc, fs: MountedFs, source: Endpoint, req: FsRequest): Promise<Reply> {
    switch (req.op) {
      case 'stat':
        return okReply({ stat: statPayload(await fs.stat(req.path)) });
      case 'fstat':
        return okReply({ stat: statPayload(await fs.statIno(req.ino)) });
      case 'open': {
        const o: { create: boolean; exclusive: boolean; truncate: boolean; mode?: number } = { create: req.create, exclusive: req.exclusive, truncate: req.truncate };
        if (req.mode !== undefined) o.mode = req.mode;
        return okReply({ stat: statPayload(await fs.open(req.path, o)) });
      }
      case 'read': {
        const ino = await inoOf(fs, req.file);
        const data = await fs.read(ino, req.offset, req.length);
        if (req.grant === undefined) return okReply({ bytes: data.length, data });
        const grant = req.grant;
        await this.copies.run(() => ipc.copyTo({ owner: source, grant }, data));
        return okReply({ bytes: data.length });
      }
      case 'write': {
        let data = req.data;
        if (data === undefined) {
          const buf = new Uint8Array(req.length);
          const grant = req.grant ?? 0;
          const got = await this.copies.run(() => ipc.copyFrom({ owner: source, grant }, buf));
          data = got === buf.length ? buf : buf.subarray(0, got);
        }
        const stat = req.offset === 'append' ? await fs.append(req.ino, data) : await fs.write(req.ino, req.offset, data);
        return okReply({ bytes: data.length, stat: statPayload(stat) });
      }
      case 'truncate':
        return okReply({ stat: statPayload(await fs.truncate(await inoOf(fs, req.file), req.size)) });
      case 'mkdir':
        await fs.mkdir(req.path, req.mode);
        return okReply({ stat: statPayload(await fs.stat(req.path)) });
      case 'rmdir':
        await fs.rmdir(req.path);
        return okReply({});
      case 'unlink':
        await fs.unlink(req.path);
        return okReply({});
      case 'rename':
        await fs.rename(req.from, req.to);
        return okReply({});
      case 'link':
        await fs.link(req.existing, req.path);
        return okReply({ stat: statPayload(await fs.stat(req.path)) });
      case 'readdir': {
        const page = await fs.readdir(req.path, req.after === undefined ? { limit: req.limit } : { after: req.after, limit: req.limit });
        const entries = page.entries.map((e) => ({ name: e.name, ino: e.ino, kind: e.kind }));
        return okReply(page.next === undefined ? { entries } : { entries, next: page.next });
      }
      case 'statfs':
        return okReply({ ...(await fs.statfs()), maxInline: FS_MAX_INLINE });
      case 'sync':
        await this.sync();
        return okReply({});
    }
  }

  /**
   * Writes every dirty block back and, unless only the periodic write-back asks, flushes the disk;
   * one at a time.
   */
  private async sync(durable = true): Promise<void> {
    const fs = this.fs;
    if (fs === undefined) return;
    while (this.syncing !== undefined) await this.syncing;
    this.syncing = (durable ? fs.sync() : fs.writeBack()).finally(() => (this.syncing = undefined));
    await this.syncing;
  }
}

async function inoOf(fs: MountedFs, f: FileRef): Promise<number> {
  return 'ino' in f ? f.ino : (await fs.stat(f.path)).ino;
}

/** The factory a service host loads FS by: `createService({disk, limits?, cacheMB?})`. */
export function createService(args?: Payload): Service {
  const a = (typeof args === 'object' && args !== null && !Array.isArray(args) && !(args instanceof Uint8Array) ? args : {}) as Record<string, unknown>;
  if (typeof a.disk !== 'number') throw new DvsError('EDVSINVAL', 'FS needs disk: the slot of its RDISK', { details: { field: 'disk' } });
  const opts: { -readonly [K in keyof FsServerOptions]: FsServerOptions[K] } = { diskSlot: a.disk };
  if (typeof a.limits === 'object' && a.limits !== null) opts.limits = a.limits as unknown as DcLimits;
  if (typeof a.cacheMB === 'number' && a.cacheMB > 0) opts.cacheBytes = Math.floor(a.cacheMB * 1024 * 1024);
  return new FsServer(opts);
}
