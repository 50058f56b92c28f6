/**
 * The members' protocol of a replica group (docs/replication.md, "Between members"): the primary's
 * group endpoint calls each backup's member endpoint, and a joining member calls the primary's.
 * Every message names the primary's epoch: a member refuses one older than the newest it knows
 * (EDVSGRPLEADER), which is how a deposed primary is fenced off on every member.
 */
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { fieldsOf, intIn, optBytes, optIntIn } from '../../transport/request-fields.js';

/** Message types: the replica groups' range starts at 0x580. */
export const RG_PRIMARY = 0x580;
export const RG_APPLY = 0x581;
export const RG_CHUNK = 0x582;
export const RG_SYNCED = 0x583;
export const RG_JOIN = 0x584;

/** Bytes carried inline; more goes through a grant of the sender. */
export const RG_MAX_INLINE = 32 * 1024;
/** Bytes of one state chunk's hash. */
export const RG_HASH_BYTES = 16;
/** Most chunks a state is compared in (the joiner's hashes travel inline). */
export const RG_MAX_CHUNKS = 2048;
export const RG_MIN_CHUNK = 64 * 1024;

/** A new primary's announcement: from now on only `epoch` or newer is obeyed. */
export interface PrimaryMsg {
  readonly t: 'primary';
  readonly epoch: number;
  /** The group's endpoint. */
  readonly group: number;
  readonly seq: number;
}
/** One update (seq) or one piece of state (at offset), inline or in the sender's grant. */
export interface DataMsg {
  readonly t: 'apply' | 'chunk';
  readonly epoch: number;
  readonly seq: number;
  readonly offset: number;
  readonly size: number;
  readonly bytes: number;
  readonly data: Uint8Array | undefined;
  readonly grant: number | undefined;
}
/** The joiner holds everything up to `seq`: it is synchronised. */
export interface SyncedMsg {
  readonly t: 'synced';
  readonly epoch: number;
  readonly seq: number;
}
/** A member asks the primary to bring it in: its state's size and chunk hashes. */
export interface JoinMsg {
  readonly t: 'join';
  readonly node: number;
  /** The joiner's member endpoint (updates go there). */
  readonly member: number;
  readonly size: number;
  readonly chunk: number;
  readonly hashes: Uint8Array;
}
export type MemberMsg = PrimaryMsg | DataMsg | SyncedMsg | JoinMsg;

const MAX = Number.MAX_SAFE_INTEGER;

export function parseMemberMsg(type: number, payload: Payload): MemberMsg {
  switch (type) {
    case RG_PRIMARY: {
      const f = fieldsOf(payload, ['epoch', 'group', 'seq'], 'primary');
      return { t: 'primary', epoch: intIn(f.epoch, 'epoch', 0, MAX), group: intIn(f.group, 'group', -0x10000, MAX), seq: intIn(f.seq, 'seq', 0, MAX) };
    }
    case RG_APPLY:
    case RG_CHUNK: {
      const f = fieldsOf(payload, ['epoch', 'seq', 'offset', 'size', 'bytes', 'data', 'grant'], 'replica update');
      const data = optBytes(f.data, 'data', RG_MAX_INLINE);
      const bytes = intIn(f.bytes, 'bytes', 0, 1 << 30);
      const grant = optIntIn(f.grant, 'grant', 0, MAX);
      if (data === undefined && grant === undefined) throw new DvsError('EDVSINVAL', 'a replica update carries data or a grant', { details: { field: 'data' } });
      if (data !== undefined && data.length !== bytes) throw new DvsError('EDVSINVAL', `bytes is ${bytes}, data holds ${data.length}`, { details: { field: 'bytes' } });
      return {
        t: type === RG_APPLY ? 'apply' : 'chunk',
        epoch: intIn(f.epoch, 'epoch', 0, MAX),
        seq: intIn(f.seq, 'seq', 0, MAX),
        offset: optIntIn(f.offset, 'offset', 0, MAX) ?? 0,
        size: optIntIn(f.size, 'size', 0, MAX) ?? 0,
        bytes,
        data,
        grant,
      };
    }
    case RG_SYNCED: {
      const f = fieldsOf(payload, ['epoch', 'seq'], 'synced');
      return { t: 'synced', epoch: intIn(f.epoch, 'epoch', 0, MAX), seq: intIn(f.seq, 'seq', 0, MAX) };
    }
    case RG_JOIN: {
      const f = fieldsOf(payload, ['node', 'member', 'size', 'chunk', 'hashes'], 'join');
      const hashes = optBytes(f.hashes, 'hashes', RG_MAX_CHUNKS * RG_HASH_BYTES) ?? new Uint8Array(0);
      if (hashes.length % RG_HASH_BYTES !== 0) throw new DvsError('EDVSINVAL', `hashes must be hashes of ${RG_HASH_BYTES} bytes`, { details: { field: 'hashes' } });
      return { t: 'join', node: intIn(f.node, 'node', 0, 4095), member: intIn(f.member, 'member', -0x10000, MAX), size: intIn(f.size, 'size', 0, MAX), chunk: intIn(f.chunk, 'chunk', 1, 1 << 30), hashes };
    }
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown replica message type 0x${type.toString(16)}`, { details: { field: 'type' } });
  }
}

/** The chunk size a state of `size` bytes is compared in. */
export function chunkSizeFor(size: number): number {
  let chunk = RG_MIN_CHUNK;
  while (Math.ceil(size / chunk) > RG_MAX_CHUNKS) chunk *= 2;
  return chunk;
}
