/**
 * RDISK, the block-device server (docs/vos/rdisk.md): a disk image file of its node, served by
 * message passing. Requests are applied one at a time in the order they are received, writes
 * numbered by a sequence, so its state (the image) and its request stream have the shape a replica
 * group can order later. Multi-extent requests move their data through one grant, so a remote FS
 * reads or writes a megabyte in one round trip and one bulk copy. RDISK is tied to its image file:
 * it does not move.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { M3Ipc } from '../../ipc/calls.js';
import type { Endpoint } from '../../ipc/endpoint.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Service, ServiceContext } from '../../services/service.js';
import { errorReply, okReply, replyQuietly } from '../server-replies.js';
import { parseRdiskRequest, RD_DONE, RD_MAX_INLINE, RD_MAX_IO, RD_VERSION, tagOf, type Extent, type RdiskRequest } from './rdisk-messages.js';

export interface RdiskOptions {
  /** The image file. */
  readonly image: string;
  readonly readOnly?: boolean;
  /** How long an RD_DONE send may wait for its requester to receive it (ms). */
  readonly doneTimeoutMs?: number;
}

export interface RdiskInfo {
  readonly size: number;
  readonly readOnly: boolean;
  readonly requests: number;
  /** Writes applied since this incarnation opened the image. */
  readonly writes: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

type Reply = { readonly type: number; readonly payload: Payload };

const DEFAULT_DONE_TIMEOUT_MS = 10_000;
/** At its stop, how long without a request counts as quiet, and the longest it waits for that. */
const STOP_QUIET_MS = 300;
const STOP_QUIET_MAX_MS = 5_000;

export class RdiskServer implements Service {
  private file: FileHandle | undefined;
  private size = 0;
  private requests = 0;
  private writes = 0;
  private bytesRead = 0;
  private bytesWritten = 0;
  private lastRequestAt = 0;
  private readonly readOnly: boolean;

  constructor(private readonly opts: RdiskOptions) {
    this.readOnly = opts.readOnly ?? false;
  }

  info(): RdiskInfo {
    return { size: this.size, readOnly: this.readOnly, requests: this.requests, writes: this.writes, bytesRead: this.bytesRead, bytesWritten: this.bytesWritten };
  }

  movable(): string {
    return `RDISK serves the image file ${this.opts.image} of its node`;
  }

  /**
   * Stopped for good: RDISK serves on until its clients are quiet (FS writes its cache back when
   * the same VOS stops, perhaps on another node a moment later), then what was written reaches
   * stable storage.
   */
  async stop(): Promise<void> {
    const until = Date.now() + STOP_QUIET_MAX_MS;
    while (Date.now() < until && Date.now() - this.lastRequestAt < STOP_QUIET_MS) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, STOP_QUIET_MS));
    while (Date.now() < until && Date.now() - this.lastRequestAt < STOP_QUIET_MS) await new Promise((r) => setTimeout(r, 50));
    if (!this.readOnly) await this.file?.datasync();
  }

  async run(ipc: M3Ipc, ctx: ServiceContext): Promise<void> {
    this.file = await openImage(this.opts.image, this.readOnly);
    try {
      this.size = (await this.file.stat()).size;
      for (;;) {
        if (ctx.signal.aborted) return;
        let m: Message;
        try {
          m = await ipc.receiveRequest();
        } catch (err) {
          if (isDvsError(err, 'EDVSWOKENUP') || isDvsError(err, 'EDVSTIMEDOUT')) continue;
          if (isDvsError(err, 'EDVSSHUTDOWN') || isDvsError(err, 'EDVSNOTBIND')) return;
          throw err;
        }
        this.requests++;
        this.lastRequestAt = Date.now();
        await this.serve(ipc, m);
      }
    } finally {
      await this.file.close().catch(() => undefined);
      this.file = undefined;
    }
  }

  private async serve(ipc: M3Ipc, m: Message): Promise<void> {
    let req: RdiskRequest | undefined;
    let out: Reply;
    try {
      req = parseRdiskRequest(m.type, m.payload);
      out = await this.handle(ipc, m.source, req);
    } catch (err) {
      out = errorReply(err);
    }
    await answerRdisk(ipc, m, req === undefined ? tagOf(m.payload) : req.tag, out, this.opts.doneTimeoutMs);
  }

  private async handle(ipc: M3Ipc, source: Endpoint, req: RdiskRequest): Promise<Reply> {
    const file = this.file;
    if (file === undefined) throw new DvsError('EDVSSHUTDOWN', 'RDISK has closed its image');
    switch (req.op) {
      case 'open':
        return okReply({ version: RD_VERSION, size: this.size, readOnly: this.readOnly, maxIo: RD_MAX_IO, maxInline: RD_MAX_INLINE });
      case 'size':
        return okReply({ size: this.size });
      case 'flush':
        if (!this.readOnly) await file.datasync();
        return okReply({ writes: this.writes });
      case 'read': {
        this.checkBounds(req.extents);
        const buf = Buffer.allocUnsafe(req.bytes);
        let at = 0;
        for (const e of req.extents) {
          await readFully(file, buf, at, e);
          at += e.length;
        }
        this.bytesRead += req.bytes;
        if (req.grant === undefined) return okReply({ bytes: req.bytes, data: buf });
        await ipc.copyTo({ owner: source, grant: req.grant, offset: req.grantOffset }, buf);
        return okReply({ bytes: req.bytes });
      }
      case 'write': {
        if (this.readOnly) throw new DvsError('EDVSROFS', `RDISK serves ${this.opts.image} read-only`);
        this.checkBounds(req.extents);
        let data = req.data;
        if (data === undefined) {
          const buf = Buffer.allocUnsafe(req.bytes);
          const got = await ipc.copyFrom({ owner: source, grant: req.grant ?? 0, offset: req.grantOffset }, buf);
          if (got !== req.bytes) throw new DvsError('EDVSINVAL', `the grant held ${got} bytes, the write ${req.bytes}`, { details: { field: 'grant' } });
          data = buf;
        }
        let at = 0;
        for (const e of req.extents) {
          await file.write(data, at, e.length, e.offset);
          at += e.length;
        }
        this.writes++;
        this.bytesWritten += req.bytes;
        return okReply({ bytes: req.bytes, seq: this.writes });
      }
    }
  }

  private checkBounds(extents: readonly Extent[]): void {
    checkBounds(extents, this.size);
  }
}

/** EDVSNXIO for an extent beyond a device of `size` bytes. */
export function checkBounds(extents: readonly Extent[], size: number): void {
  for (const e of extents) {
    if (e.offset + e.length > size) {
      throw new DvsError('EDVSNXIO', `bytes ${e.offset}..${e.offset + e.length} lie beyond the device's ${size}`, { details: { offset: e.offset, length: e.length, size } });
    }
  }
}

/** Answers a request: by reply, or for a tagged one by an RD_DONE send (not awaited: RDISK goes on serving meanwhile). */
export async function answerRdisk(ipc: M3Ipc, m: Message, tag: number | undefined, out: Reply, doneTimeoutMs = DEFAULT_DONE_TIMEOUT_MS): Promise<void> {
  if (tag === undefined) {
    await replyQuietly(ipc, m.source, out);
    return;
  }
  const payload = { tag, type: out.type, ...(out.payload as Record<string, Payload>) };
  ipc.send(m.source, { type: RD_DONE, payload }, { timeoutMs: doneTimeoutMs }).catch(() => undefined);
}

export async function openImage(image: string, readOnly: boolean): Promise<FileHandle> {
  try {
    return await open(image, readOnly ? 'r' : 'r+');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DvsError(code === 'ENOENT' ? 'EDVSNOENT' : 'EDVSIO', `RDISK cannot open its image ${image}: ${(err as Error).message}`, { details: { image } });
  }
}

export async function readFully(file: FileHandle, buf: Buffer, at: number, e: Extent): Promise<void> {
  let done = 0;
  while (done < e.length) {
    const { bytesRead } = await file.read(buf, at + done, e.length - done, e.offset + done);
    if (bytesRead === 0) throw new DvsError('EDVSIO', `the image ended at byte ${e.offset + done}`);
    done += bytesRead;
  }
}

/** The factory a service host loads RDISK by: `createService({image, readOnly?})`. */
export function createService(args?: Payload): Service {
  const a = (typeof args === 'object' && args !== null && !Array.isArray(args) && !(args instanceof Uint8Array) ? args : {}) as Record<string, unknown>;
  if (typeof a.image !== 'string' || a.image.length === 0) throw new DvsError('EDVSINVAL', 'RDISK needs options.image: the path of its image file on its node', { details: { field: 'image' } });
  return new RdiskServer({ image: a.image, readOnly: a.readOnly === true });
}
