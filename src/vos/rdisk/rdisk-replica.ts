/**
 * RDISK as a replica group's service (docs/replication.md, docs/vos/rdisk.md "Replicated"): the
 * same protocol, served by the group's primary; a write becomes an update (its extents and data)
 * that every member writes to its own image in the primary's order, so the images stay identical.
 * A member's state is its image: a joining member compares it chunk by chunk with the primary's.
 * Every member's image must have the same size.
 */
import type { FileHandle } from 'node:fs/promises';
import type { M3Ipc } from '../../ipc/calls.js';
import { DvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { Prepared, ReplicaAnswer, ReplicatedService } from '../../services/replica/replicated-service.js';
import { okReply } from '../server-replies.js';
import { parseRdiskRequest, RD_MAX_INLINE, RD_MAX_IO, RD_VERSION, tagOf, type Extent } from './rdisk-messages.js';
import { answerRdisk, checkBounds, openImage, readFully } from './rdisk-server.js';

/** An update: u32 extent count, then per extent f64 offset and u32 length, then the data. */
function encodeWrite(extents: readonly Extent[], data: Uint8Array): Uint8Array {
  const head = 4 + extents.length * 12;
  const out = Buffer.allocUnsafe(head + data.length);
  out.writeUInt32LE(extents.length, 0);
  extents.forEach((e, i) => {
    out.writeDoubleLE(e.offset, 4 + i * 12);
    out.writeUInt32LE(e.length, 12 + i * 12);
  });
  out.set(data, head);
  return out;
}

function decodeWrite(update: Uint8Array): { extents: Extent[]; data: Uint8Array } {
  const b = Buffer.from(update.buffer, update.byteOffset, update.byteLength);
  if (b.length < 4) throw new DvsError('EDVSINVAL', 'a truncated RDISK update');
  const n = b.readUInt32LE(0);
  const head = 4 + n * 12;
  if (b.length < head) throw new DvsError('EDVSINVAL', 'a truncated RDISK update');
  const extents: Extent[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const e = { offset: b.readDoubleLE(4 + i * 12), length: b.readUInt32LE(12 + i * 12) };
    total += e.length;
    extents.push(e);
  }
  if (b.length - head !== total) throw new DvsError('EDVSINVAL', `an RDISK update's extents hold ${total} bytes, its data ${b.length - head}`);
  return { extents, data: b.subarray(head) };
}

export class RdiskReplica implements ReplicatedService {
  private file: FileHandle | undefined;
  private size = 0;
  private writes = 0;

  constructor(private readonly image: string) {}

  async open(): Promise<void> {
    this.file = await openImage(this.image, false);
    this.size = (await this.file.stat()).size;
  }

  private handle(): FileHandle {
    if (this.file === undefined) throw new DvsError('EDVSSHUTDOWN', 'RDISK has closed its image');
    return this.file;
  }

  async prepare(ipc: M3Ipc, m: Message): Promise<Prepared> {
    const req = parseRdiskRequest(m.type, m.payload);
    const file = this.handle();
    switch (req.op) {
      case 'open':
        return { answer: okReply({ version: RD_VERSION, size: this.size, readOnly: false, maxIo: RD_MAX_IO, maxInline: RD_MAX_INLINE, replicated: true }) };
      case 'size':
        return { answer: okReply({ size: this.size }) };
      case 'flush':
        await file.datasync();
        return { answer: okReply({ writes: this.writes }) };
      case 'read': {
        checkBounds(req.extents, this.size);
        const buf = Buffer.allocUnsafe(req.bytes);
        let at = 0;
        for (const e of req.extents) {
          await readFully(file, buf, at, e);
          at += e.length;
        }
        if (req.grant === undefined) return { answer: okReply({ bytes: req.bytes, data: buf }) };
        await ipc.copyTo({ owner: m.source, grant: req.grant, offset: req.grantOffset }, buf);
        return { answer: okReply({ bytes: req.bytes }) };
      }
      case 'write': {
        checkBounds(req.extents, this.size);
        let data = req.data;
        if (data === undefined) {
          const buf = Buffer.allocUnsafe(req.bytes);
          const got = await ipc.copyFrom({ owner: m.source, grant: req.grant ?? 0, offset: req.grantOffset }, buf);
          if (got !== req.bytes) throw new DvsError('EDVSINVAL', `the grant held ${got} bytes, the write ${req.bytes}`, { details: { field: 'grant' } });
          data = buf;
        }
        return { answer: okReply({ bytes: req.bytes }), update: encodeWrite(req.extents, data) };
      }
    }
  }

  async apply(update: Uint8Array): Promise<ReplicaAnswer> {
    const { extents, data } = decodeWrite(update);
    checkBounds(extents, this.size);
    const file = this.handle();
    let at = 0;
    for (const e of extents) {
      await file.write(data, at, e.length, e.offset);
      at += e.length;
    }
    this.writes++;
    return okReply({ bytes: data.length, seq: this.writes });
  }

  async answer(ipc: M3Ipc, m: Message, answer: ReplicaAnswer): Promise<void> {
    await answerRdisk(ipc, m, tagOf(m.payload), answer);
  }

  stateSize(): Promise<number> {
    return Promise.resolve(this.size);
  }

  async readState(offset: number, length: number): Promise<Uint8Array> {
    const buf = Buffer.allocUnsafe(length);
    await readFully(this.handle(), buf, 0, { offset, length });
    return buf;
  }

  async writeState(offset: number, data: Uint8Array, size: number): Promise<void> {
    if (size !== this.size) throw new DvsError('EDVSINVAL', `this member's image ${this.image} holds ${this.size} bytes, the group's ${size}: replicas need images of one size`, { details: { size: this.size, groupSize: size } });
    checkBounds([{ offset, length: data.length }], this.size);
    if (data.length > 0) await this.handle().write(data, 0, data.length, offset);
  }

  async flush(): Promise<void> {
    await this.file?.datasync();
  }

  async close(): Promise<void> {
    await this.file?.close().catch(() => undefined);
    this.file = undefined;
  }
}

/** The replicated form's factory: `createReplicatedService({image})`. */
export function createReplicatedService(args?: Payload): ReplicatedService {
  const a = (typeof args === 'object' && args !== null && !Array.isArray(args) && !(args instanceof Uint8Array) ? args : {}) as Record<string, unknown>;
  if (typeof a.image !== 'string' || a.image.length === 0) throw new DvsError('EDVSINVAL', 'RDISK needs options.image: the path of its image file on its node', { details: { field: 'image' } });
  if (a.readOnly === true) throw new DvsError('EDVSINVAL', 'a replicated RDISK cannot be read-only', { details: { field: 'readOnly' } });
  return new RdiskReplica(a.image);
}

