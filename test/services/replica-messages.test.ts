/** The replica members' protocol: every message validated, a bad one a typed error naming its field. */
import { describe, expect, it } from 'vitest';
import { DvsError } from '../../src/ipc/errors.js';
import { chunkSizeFor, parseMemberMsg, RG_APPLY, RG_CHUNK, RG_HASH_BYTES, RG_JOIN, RG_MAX_CHUNKS, RG_MAX_INLINE, RG_MIN_CHUNK, RG_PRIMARY, RG_SYNCED } from '../../src/services/replica/replica-messages.js';

function refused(type: number, payload: unknown): DvsError {
  try {
    parseMemberMsg(type, payload as never);
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return err as DvsError;
  }
  throw new Error('parsed');
}

describe('replica member messages', () => {
  it('parse when well formed', () => {
    expect(parseMemberMsg(RG_PRIMARY, { epoch: 7, group: 3, seq: 0 })).toEqual({ t: 'primary', epoch: 7, group: 3, seq: 0 });
    const data = new Uint8Array(10);
    expect(parseMemberMsg(RG_APPLY, { epoch: 7, seq: 1, bytes: 10, data })).toMatchObject({ t: 'apply', seq: 1, bytes: 10, data, grant: undefined });
    expect(parseMemberMsg(RG_CHUNK, { epoch: 7, seq: 1, offset: 65536, size: 1 << 20, bytes: 1 << 16, grant: 4 })).toMatchObject({ t: 'chunk', offset: 65536, grant: 4, data: undefined });
    expect(parseMemberMsg(RG_SYNCED, { epoch: 7, seq: 9 })).toEqual({ t: 'synced', epoch: 7, seq: 9 });
    expect(parseMemberMsg(RG_JOIN, { node: 2, member: 40, size: 100, chunk: RG_MIN_CHUNK, hashes: new Uint8Array(RG_HASH_BYTES) })).toMatchObject({ t: 'join', node: 2, member: 40 });
  });

  it.each([
    ['a payload that is no map', RG_PRIMARY, 'x', 'payload'],
    ['an unknown field', RG_SYNCED, { epoch: 1, seq: 1, extra: 1 }, 'extra'],
    ['a negative epoch', RG_PRIMARY, { epoch: -1, group: 3, seq: 0 }, 'epoch'],
    ['neither data nor grant', RG_APPLY, { epoch: 1, seq: 1, bytes: 4 }, 'data'],
    ['bytes that disagree with the data', RG_APPLY, { epoch: 1, seq: 1, bytes: 4, data: new Uint8Array(5) }, 'bytes'],
    ['inline data over the limit', RG_APPLY, { epoch: 1, seq: 1, bytes: RG_MAX_INLINE + 1, data: new Uint8Array(RG_MAX_INLINE + 1) }, 'data'],
    ['hashes of the wrong width', RG_JOIN, { node: 1, member: 2, size: 1, chunk: 1, hashes: new Uint8Array(RG_HASH_BYTES + 1) }, 'hashes'],
    ['too many hashes', RG_JOIN, { node: 1, member: 2, size: 1, chunk: 1, hashes: new Uint8Array(RG_HASH_BYTES * (RG_MAX_CHUNKS + 1)) }, 'hashes'],
    ['a node out of range', RG_JOIN, { node: 5000, member: 2, size: 1, chunk: 1 }, 'node'],
  ])('refuse %s with EDVSINVAL naming the field', (_label, type, payload, field) => {
    const e = refused(type, payload);
    expect(e.code).toBe('EDVSINVAL');
    expect(e.details?.field).toBe(field);
  });

  it('an unknown type is EDVSBADREQUEST', () => {
    expect(refused(0x58f, {}).code).toBe('EDVSBADREQUEST');
  });

  it('a state is compared in at most RG_MAX_CHUNKS chunks of at least RG_MIN_CHUNK', () => {
    for (const size of [0, 1, RG_MIN_CHUNK * RG_MAX_CHUNKS, RG_MIN_CHUNK * RG_MAX_CHUNKS + 1, 2 ** 40]) {
      const c = chunkSizeFor(size);
      expect(c).toBeGreaterThanOrEqual(RG_MIN_CHUNK);
      expect(Math.ceil(size / c)).toBeLessThanOrEqual(RG_MAX_CHUNKS);
    }
  });
});
