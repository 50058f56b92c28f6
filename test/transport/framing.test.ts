/**
 * Framing (length | version | flags | msgpack body, optional LZ4), the pre-encoded data frame and
 * the structural schema of link and kernel frames.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DvsError } from '../../src/ipc/errors.js';
import type { KernelFrame } from '../../src/kernel/frames.js';
import {
  decodeValue,
  BULK_MIN_BYTES,
  encodeDataFrame,
  encodedBytes,
  encodeFrame,
  encodeFrameSegments,
  encodeKernelFrame,
  encodeSendAcks,
  encodeValueView,
  encodeWireArray,
  FLAG_LZ4,
  flattenWire,
  FrameDecoder,
  kernelFrameToWire,
  LINK_PROTOCOL_VERSION,
  parseKernelFrame,
  parseLinkFrame,
  SEGMENT_MIN_BYTES,
  WIRE_VERSION,
} from '../../src/transport/index.js';

const SAMPLES: unknown[] = [
  null,
  true,
  0,
  -1,
  2 ** 40,
  1.5,
  'héllo',
  new Uint8Array([1, 2, 3]),
  [1, [2, [3]]],
  { a: 1, b: { c: 'x' }, d: new Uint8Array(0) },
  { big: 'z'.repeat(100_000) },
];

/** Decoded binaries are Buffers; compare them as plain Uint8Arrays. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof DvsError ? err.code : `not a DvsError: ${String(err)}`;
  }
  return undefined;
}

const ALL_KINDS: KernelFrame[] = [
  { k: 'send', dc: 1, id: 7, src: -3, dst: 2 ** 40, type: 9, payload: { x: [1, 'a'] }, rec: true },
  { k: 'send-ack', dc: 1, id: 7, rc: 0 },
  { k: 'send-ack', dc: 1, id: 7, rc: -316, node: 4 },
  { k: 'cancel', dc: 2, id: 8 },
  { k: 'cancel-ack', dc: 2, id: 8 },
  { k: 'reply', id: 1, dc: 1, src: 5, dst: -3, type: 1, payload: null },
  { k: 'reply-cancel', dc: 1, id: 12, client: 40, server: 5 },
  { k: 'notify', dc: 1, src: -2, dst: 3, arg: 0x80000000 },
  { k: 'unbound', dc: 1, ep: 31_000_123 },
  { k: 'copy-read', dc: 1, id: 1, requester: 4, owner: 5, grant: 2, offset: 0, length: 65536 },
  { k: 'copy-data', dc: 1, id: 1, rc: 0, data: new Uint8Array([9, 8]) },
  { k: 'copy-data', dc: 1, id: 1, rc: -5 },
  { k: 'copy-write', dc: 1, id: 2, requester: 4, owner: 5, grant: 2, offset: 10, data: new Uint8Array(3) },
  { k: 'copy-ack', dc: 1, id: 2, rc: 0 },
  { k: 'reply-cancel-ack', dc: 1, id: 12, client: 40 },
  { k: 'copy-relay', dc: 1, id: 3, requester: 4, owner: 5, grant: 2, offset: 7, length: 100, dstNode: 2, dstOwner: 6, dstGrant: 1, dstOffset: 9 },
];

describe('framing', () => {
  it('round-trips values, one frame at a time and all at once', () => {
    const dec = new FrameDecoder();
    const frames = SAMPLES.map((v) => encodeFrame(v));
    for (const [i, f] of frames.entries()) {
      expect(f.readUInt32BE(0)).toBe(f.byteLength - 4);
      expect(f[4]).toBe(WIRE_VERSION);
      expect(plain(dec.push(f))).toEqual([SAMPLES[i]]);
    }
    expect(plain(new FrameDecoder().push(Buffer.concat(frames)))).toEqual(SAMPLES);
  });

  it('decodes a stream split at every byte boundary', () => {
    const stream = Buffer.concat(SAMPLES.slice(0, 10).map((v) => encodeFrame(v)));
    for (let cut = 0; cut <= stream.byteLength; cut++) {
      const dec = new FrameDecoder();
      const got = [...dec.push(stream.subarray(0, cut)), ...dec.push(stream.subarray(cut))];
      expect(plain(got)).toEqual(SAMPLES.slice(0, 10));
      expect(dec.buffered).toBe(0);
    }
    // And byte by byte.
    const dec = new FrameDecoder();
    const got: unknown[] = [];
    for (let i = 0; i < stream.byteLength; i++) got.push(...dec.push(stream.subarray(i, i + 1)));
    expect(plain(got)).toEqual(SAMPLES.slice(0, 10));
  });

  it('encodes frames that later encodes never write over (msgpack bytes are the frame)', () => {
    // Frames of every size kept while thousands more are encoded, across msgpack buffer turnovers.
    const values = Array.from({ length: 3000 }, (_, i) => ({ i, text: 'x'.repeat((i * 37) % 3000), bytes: Buffer.alloc(i % 7 === 0 ? 20_000 : i % 50, i & 0xff) }));
    const frames = values.map((v) => encodeFrame(v));
    const dec = new FrameDecoder();
    const got = frames.flatMap((f) => dec.push(f)) as { i: number; text: string; bytes: Uint8Array }[];
    expect(got.length).toBe(values.length);
    for (const [k, v] of got.entries()) {
      expect(v.i).toBe(k);
      expect(v.text).toBe(values[k]!.text);
      expect(Buffer.compare(Buffer.from(v.bytes), values[k]!.bytes)).toBe(0);
    }
    // A large frame has a buffer of its own: it does not keep msgpack's alive.
    const big = frames[7]!;
    expect(big.byteLength).toBeGreaterThan(20_000);
    expect(big.buffer.byteLength).toBe(big.byteLength);
  });

  it('decodes frames where they lie in a chunk, after a frame split across chunks', () => {
    const a = encodeFrame({ n: 1, bytes: Buffer.from('first') });
    const b = encodeFrame({ n: 2, bytes: Buffer.from('second') });
    const c = encodeFrame({ n: 3 });
    const dec = new FrameDecoder();
    // a's header split in two, then the rest of a with all of b and half of c.
    expect(dec.push(a.subarray(0, 2))).toEqual([]);
    const chunk = Buffer.concat([a.subarray(2), b, c.subarray(0, 5)]);
    const got = dec.push(chunk) as { n: number; bytes: Uint8Array }[];
    expect(got.map((v) => v.n)).toEqual([1, 2]);
    expect(Buffer.from(got[0]!.bytes).toString()).toBe('first');
    // b's binary field is a view of the chunk it arrived in, not a copy.
    expect(got[1]!.bytes.buffer).toBe(chunk.buffer);
    expect(Buffer.from(got[1]!.bytes).toString()).toBe('second');
    expect(dec.buffered).toBe(5);
    expect(dec.push(c.subarray(5))).toEqual([{ n: 3 }]);
    expect(dec.buffered).toBe(0);
  });

  it.each([false, true])('with transient chunks, keeps nothing that points into a chunk once push returns (assembling large frames: %s)', (assembleLargeFrames) => {
    // Frames with binary fields of every size, fed through one reused buffer that is scribbled
    // over after every push, in reads of varying length (a socket's onread buffer).
    const values = Array.from({ length: 400 }, (_, i) => ({ i, bytes: Buffer.alloc((i * 97) % 5000, i & 0xff), big: i % 50 === 0 ? Buffer.alloc(70_000, 3) : null }));
    const stream = Buffer.concat(values.map((v) => encodeFrame(v)));
    const reused = Buffer.alloc(4096);
    const dec = new FrameDecoder({ transientChunks: true, assembleLargeFrames });
    const got: { i: number; bytes: Uint8Array; big: Uint8Array | null }[] = [];
    for (let at = 0, n = 1; at < stream.byteLength; at += n, n = (n * 7 + 13) % reused.byteLength || 1) {
      const len = Math.min(n, stream.byteLength - at);
      stream.copy(reused, 0, at, at + len);
      got.push(...(dec.push(reused.subarray(0, len)) as typeof got));
      reused.fill(0xee);
    }
    expect(dec.buffered).toBe(0);
    expect(got.length).toBe(values.length);
    for (const [k, v] of got.entries()) {
      expect(v.i).toBe(k);
      expect(Buffer.compare(Buffer.from(v.bytes), values[k]!.bytes)).toBe(0);
      if (values[k]!.big === null) expect(v.big).toBeNull();
      else expect(Buffer.compare(Buffer.from(v.big!), values[k]!.big!)).toBe(0);
    }
  });

  it('assembles large frames as their bytes arrive, in either chunk mode, whatever the cut', () => {
    const big = (seed: number, n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, k) => (k * 31 + seed) & 0xff));
    const values = [
      { n: 0, data: big(1, 300_000) },
      { n: 1, data: Buffer.from('small') },
      { n: 2, data: big(2, 70_000) },
      { n: 3, data: big(3, 200_000) },
      { n: 4, data: Buffer.alloc(10, 4) },
    ];
    const frames = values.map((v) => encodeFrame(v));
    const stream = Buffer.concat(frames);
    // Cuts: in a frame's length field, one byte into a body, the end of a large frame together
    // with the next frames, and a read that holds a whole large frame.
    const cuts = [2, frames[0]!.byteLength - 1, frames[0]!.byteLength + frames[1]!.byteLength + 7, stream.byteLength - frames[4]!.byteLength - 3, stream.byteLength];
    for (const transientChunks of [false, true]) {
      for (const step of [1000, 65_536, 400_000]) {
        const dec = new FrameDecoder({ transientChunks, assembleLargeFrames: true });
        const reused = Buffer.alloc(400_000);
        const got: { n: number; data: Uint8Array }[] = [];
        let at = 0;
        for (const cut of [...cuts, ...Array.from({ length: Math.ceil(stream.byteLength / step) }, (_, k) => (k + 1) * step)].sort((a, b) => a - b)) {
          const end = Math.min(cut, stream.byteLength);
          if (end <= at) continue;
          // Transient chunks come through one buffer scribbled over after each push; others are the decoder's to keep.
          stream.copy(reused, 0, at, end);
          got.push(...(dec.push(transientChunks ? reused.subarray(0, end - at) : Buffer.from(stream.subarray(at, end))) as typeof got));
          // While a large frame is incomplete, its bytes so far are buffered.
          if (got.length === 0) expect(dec.buffered).toBe(end);
          reused.fill(0xee);
          at = end;
        }
        expect(dec.buffered).toBe(0);
        expect(got.map((v) => v.n)).toEqual([0, 1, 2, 3, 4]);
        for (const [k, v] of got.entries()) expect(Buffer.compare(Buffer.from(v.data), values[k]!.data)).toBe(0);
      }
    }
  });

  it('refuses an assembled large frame with a bad header once it is complete, and stays broken', () => {
    const frame = encodeFrame({ data: Buffer.alloc(100_000, 1) });
    frame[4] = 9; // version
    const dec = new FrameDecoder({ assembleLargeFrames: true });
    expect(dec.push(frame.subarray(0, 50_000))).toEqual([]);
    expect(dec.buffered).toBe(50_000);
    expect(() => dec.push(frame.subarray(50_000))).toThrow(expect.objectContaining({ code: 'EDVSBADREQUEST' }));
    expect(dec.buffered).toBe(0);
    expect(() => dec.push(encodeFrame({ ok: true }))).toThrow(expect.objectContaining({ code: 'EDVSBADREQUEST' }));
  });

  it('compresses bodies above compressMinBytes when that helps', () => {
    const value = { text: 'abc'.repeat(10_000) };
    const plain = encodeFrame(value);
    const packed = encodeFrame(value, { compressMinBytes: 100 });
    expect(plain[5]).toBe(0);
    expect(packed[5]).toBe(FLAG_LZ4);
    expect(packed.byteLength).toBeLessThan(plain.byteLength / 10);
    expect(new FrameDecoder().push(packed)).toEqual([value]);
    // Incompressible: sent plain.
    const noise = randomBytes(2000);
    expect(encodeFrame(noise, { compressMinBytes: 100 })[5]).toBe(0);
  });

  it('refuses bad versions, flags, lengths, bodies and sizes with typed errors', () => {
    const good = encodeFrame({ a: 1 });
    const mutate = (at: number, v: number): Buffer => {
      const b = Buffer.from(good);
      b[at] = v;
      return b;
    };
    expect(codeOf(() => new FrameDecoder().push(mutate(4, 2)))).toBe('EDVSBADREQUEST'); // version
    expect(codeOf(() => new FrameDecoder().push(mutate(5, 0x80)))).toBe('EDVSBADREQUEST'); // unknown flag
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 1, 1])))).toBe('EDVSBADREQUEST'); // length < 2
    expect(codeOf(() => new FrameDecoder({ maxFrameBytes: 1024 }).push(Buffer.from([0, 0x10, 0, 0])))).toBe('EDVSPACKSIZE');
    expect(codeOf(() => new FrameDecoder({ maxFrameBytes: 8 }).push(encodeFrame('x'.repeat(20))))).toBe('EDVSPACKSIZE');
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 4, 1, 0, 0x92, 0x01])))).toBe('EDVSBADREQUEST'); // truncated msgpack
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 4, 1, 0, 0x01, 0x02])))).toBe('EDVSBADREQUEST'); // trailing bytes
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 5, 1, 1, 0xff, 0xff, 0xff])))).toBe('EDVSBADREQUEST'); // LZ4 shorter than its prefix
    expect(codeOf(() => new FrameDecoder({ maxFrameBytes: 64 }).push(encodeFrame('y'.repeat(1000), { compressMinBytes: 1 })))).toBe('EDVSPACKSIZE'); // expands too far
    expect(codeOf(() => encodeFrame('z'.repeat(100), { maxFrameBytes: 50 }))).toBe('EDVSMSGSIZE');
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 2, 1, 0])))).toBe('EDVSBADREQUEST'); // empty body
    // A body that claims more than its frame holds is refused even when the chunk goes on with
    // exactly the bytes it claims (frames are decoded where they lie, bounded by their length):
    // here the 39 bytes after the first frame would complete its string or binary value, and
    // start with the length of a frame still to come.
    const rest = Buffer.concat([Buffer.from([0, 0, 0x10, 0]), Buffer.alloc(35, 0x61)]);
    const str8 = Buffer.from([0, 0, 0, 5, 1, 0, 0xd9, 40, 0x61]);
    expect(codeOf(() => new FrameDecoder().push(Buffer.concat([str8, rest])))).toBe('EDVSBADREQUEST');
    const bin8 = Buffer.from([0, 0, 0, 5, 1, 0, 0xc4, 40, 0x61]);
    expect(codeOf(() => new FrameDecoder().push(Buffer.concat([bin8, rest])))).toBe('EDVSBADREQUEST');
    // A broken stream stays broken.
    const dec = new FrameDecoder();
    expect(codeOf(() => dec.push(mutate(4, 9)))).toBe('EDVSBADREQUEST');
    expect(codeOf(() => dec.push(good))).toBe('EDVSBADREQUEST');
  });
});

describe('frames with a bulk field (process socket)', () => {
  it('write the field where it lies: head and bytes concatenate to a frame of the same value', () => {
    const big = randomBytes(SEGMENT_MIN_BYTES + 123);
    const view = big.subarray(7, SEGMENT_MIN_BYTES + 50); // a view: its offset must be kept
    const value = { sid: 9, ok: true, data: view, after: 'x' };
    const wire = encodeFrameSegments(value, { compressMinBytes: 16 });
    expect(Array.isArray(wire)).toBe(true);
    const [head, bytes] = wire as Buffer[];
    expect(bytes!.buffer).toBe(big.buffer); // not copied
    expect(bytes!.byteOffset).toBe(big.byteOffset + 7);
    const whole = Buffer.concat([head!, bytes!]);
    expect(whole[5]).toBe(0); // never compressed
    const dec = new FrameDecoder();
    const [got] = dec.push(whole) as Record<string, unknown>[];
    expect(got).toEqual({ sid: 9, ok: true, after: 'x', data: view });
    expect(Buffer.from(got!.data as Uint8Array).equals(view)).toBe(true);
    // Split anywhere, decoded the same.
    const split = new FrameDecoder();
    expect([...split.push(whole.subarray(0, head!.byteLength + 3)), ...split.push(whole.subarray(head!.byteLength + 3))]).toEqual([got]);
  });

  it('are ordinary frames when no binary field is large enough, and keep the frame limit', () => {
    const small = { id: 1, ok: true, result: Buffer.alloc(SEGMENT_MIN_BYTES - 1) };
    const one = encodeFrameSegments(small);
    expect(Buffer.isBuffer(one)).toBe(true);
    expect(one).toEqual(encodeFrame(small));
    const err = (() => {
      try {
        encodeFrameSegments({ data: Buffer.alloc(64 * 1024) }, { maxFrameBytes: 32 * 1024 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(DvsError);
    expect((err as DvsError).code).toBe('EDVSMSGSIZE');
  });
});

describe('data frames', () => {
  it('are the plain msgpack map {t, s, a, f}, for every integer width', () => {
    const frames = ALL_KINDS.map((k) => encodeKernelFrame(k));
    const bytes = frames.reduce((n, b) => n + encodedBytes(b), 0);
    for (const [s, a] of [
      [1, 0],
      [200, 127],
      [70_000, 300],
      [2 ** 33, 2 ** 32 + 7],
    ] as const) {
      const wire = flattenWire(encodeDataFrame(s, a, frames, bytes, {}));
      const [value] = new FrameDecoder().push(wire);
      expect(plain(value)).toEqual(plain({ t: 'data', s, a, f: ALL_KINDS.map((k) => kernelFrameToWire(k)) }));
      expect(parseLinkFrame(value, 32, 32)).toEqual({ t: 'data', s, a, f: ALL_KINDS });
    }
    // 16+ and 65536+ entries use the array16 and array32 headers.
    for (const n of [16, 70_000]) {
      const many = Array.from({ length: n }, () => frames[3]!);
      const [value] = new FrameDecoder().push(flattenWire(encodeDataFrame(1, 0, many, many.length * encodedBytes(frames[3]!), {})));
      expect((value as { f: unknown[] }).f.length).toBe(n);
    }
  });

  it('carry bulk bytes as segments of the same msgpack map, uncopied', () => {
    const big = randomBytes(BULK_MIN_BYTES * 3 + 5);
    const kinds: KernelFrame[] = [
      ALL_KINDS[0]!,
      { k: 'copy-data', dc: 1, id: 7, rc: 0, data: big.subarray(3) },
      ALL_KINDS[3]!,
      { k: 'copy-write', dc: 2, id: 8, requester: 5, owner: 6, grant: 1, offset: 99, data: big },
    ];
    const frames = kinds.map((k) => encodeKernelFrame(k));
    expect(Buffer.isBuffer(frames[1])).toBe(false);
    const wire = encodeDataFrame(9, 8, frames, frames.reduce((n, f) => n + encodedBytes(f), 0), {});
    expect(Array.isArray(wire)).toBe(true);
    // The bulk segments are the caller's bytes themselves, not copies.
    expect((wire as Buffer[]).some((seg) => seg.buffer === big.buffer && seg.byteOffset === big.byteOffset + 3)).toBe(true);
    const flat = flattenWire(wire);
    // The same bytes a plain encoder would give, modulo the bin header width.
    const [value] = new FrameDecoder().push(flat);
    expect(plain(value)).toEqual(plain({ t: 'data', s: 9, a: 8, f: kinds.map((k) => kernelFrameToWire(k)) }));
    expect(parseLinkFrame(value, 32, 32)).toEqual({ t: 'data', s: 9, a: 8, f: kinds.map((k) => plain(k)) });
    // Split anywhere, the stream decodes the same.
    const dec = new FrameDecoder();
    const out: unknown[] = [];
    for (let at = 0; at < flat.byteLength; at += 1000) out.push(...dec.push(flat.subarray(at, Math.min(flat.byteLength, at + 1000))));
    expect(out.map(plain)).toEqual([plain(value)]);
    // Compression needs the body whole: one buffer then.
    const packed = encodeDataFrame(9, 8, frames, frames.reduce((n, f) => n + encodedBytes(f), 0), { compressMinBytes: 1024 });
    expect(Buffer.isBuffer(packed)).toBe(true);
    expect(plain(new FrameDecoder().push(packed as Buffer)[0])).toEqual(plain(value));
  });

  it('compress like any other frame', () => {
    const frames = Array.from({ length: 100 }, () => encodeKernelFrame(ALL_KINDS[0]!));
    const wire = flattenWire(encodeDataFrame(5, 4, frames, frames.length * encodedBytes(frames[0]!), { compressMinBytes: 512 }));
    expect(wire[5]).toBe(FLAG_LZ4);
    expect((new FrameDecoder().push(wire)[0] as { f: unknown[] }).f).toHaveLength(100);
  });
});

describe('the kernel frame encoder', () => {
  it('writes the same bytes as msgpackr for every number width, nil, booleans, undefined and payloads', () => {
    const numbers = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1, 1.5, -0.25, 1e300];
    const payloads: unknown[] = [undefined, null, true, false, 42, 'héllo', { a: [1, 2, { b: new Uint8Array([1, 2]) }] }, new Uint8Array(300), [1, 'x'], 2n ** 60n];
    for (const n of numbers) {
      const wire = [1, 2, n, n === 0 ? 0 : -n, n, 9, n, false];
      expect(encodeWireArray(wire, encodeValueView)).toEqual(Buffer.from(encodeValueView(wire)));
      expect(decodeValue(encodeWireArray(wire, encodeValueView))).toEqual(wire);
    }
    for (const p of payloads) {
      const wire = [5, 1, 7, -3, 2 ** 33, 9, p];
      expect(plain(decodeValue(encodeWireArray(wire, encodeValueView)))).toEqual(plain(wire));
    }
  });
});

describe('frame schema', () => {
  const parseOne = (v: unknown): KernelFrame[] => {
    const out: KernelFrame[] = [];
    parseKernelFrame(v, out);
    return out;
  };

  it('accepts every kernel frame kind in its positional form', () => {
    for (const k of ALL_KINDS) expect(parseOne(decodeValue(flattenWire(encodeKernelFrame(k))))).toEqual([k]);
    // 64-bit integers from other implementations arrive as bigint: accepted within the safe range.
    expect(parseOne([3n, 1n, 5n])).toEqual([{ k: 'cancel', dc: 1, id: 5 }]);
    // A send-acks element is one send-ack per id.
    expect(parseOne(decodeValue(encodeSendAcks(4, [7, 8, 2 ** 40])))).toEqual([7, 8, 2 ** 40].map((id) => ({ k: 'send-ack', dc: 4, id, rc: 0 })));
  });

  it('rejects wrong element types and counts with EDVSBADREQUEST', () => {
    const w = (i: number): unknown[] => kernelFrameToWire(ALL_KINDS[i]!);
    const bad: unknown[] = [
      null,
      [],
      'send',
      new Uint8Array(3),
      { k: 'cancel', dc: 1, id: 1 },
      [99, 1, 1],
      [0, 1, 1],
      [3, 1],
      [3, -1, 1],
      [3, 1, 1.5],
      [3, 1, '1'],
      [3, 1, 2 ** 53],
      [3, 1, 2n ** 60n],
      [3, 1, 1, 'extra'],
      [...w(0).slice(0, 7), 1],
      [...w(0).slice(0, 3), NaN, ...w(0).slice(4)],
      [...w(0).slice(0, 4), Infinity, ...w(0).slice(5)],
      [...w(2).slice(0, 4), -1],
      [...w(10).slice(0, 4), 'bytes'],
      w(12).slice(0, 7),
      [...w(9).slice(0, 6), -1, ...w(9).slice(7)],
      [13, 1, []],
      [13, 1, [1, -2]],
      [13, 1, 5],
    ];
    for (const v of bad) expect(codeOf(() => parseOne(v)), JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x))).toBe('EDVSBADREQUEST');
  });

  it('rejects malformed link frames', () => {
    const bad: unknown[] = [
      { t: 'data', s: 0, a: 0, f: [kernelFrameToWire(ALL_KINDS[3]!)] },
      { t: 'data', s: 1, a: 0, f: [] },
      { t: 'data', s: 1, a: 0, f: {} },
      { t: 'data', s: 1, a: -1, f: [kernelFrameToWire(ALL_KINDS[3]!)] },
      { t: 'data', s: 1, a: 0, f: [kernelFrameToWire(ALL_KINDS[3]!), [3]] },
      { t: 'data', s: 1, a: 0, f: [ALL_KINDS[3]] },
      { t: 'ack' },
      { t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 2, inc: 3, nonce: new Uint8Array(31) },
      { t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 1, from: 2 ** 32, to: 2, inc: 3, nonce: new Uint8Array(32) },
      { t: 'hello', v: LINK_PROTOCOL_VERSION, from: 1, to: 2, inc: 3, nonce: new Uint8Array(32) },
      { t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 2 ** 32, from: 1, to: 2, inc: 3, nonce: new Uint8Array(32) },
      { t: 'welcome', v: LINK_PROTOCOL_VERSION, kv: 1, from: 1, to: 2, inc: 3, nonce: new Uint8Array(32), mac: new Uint8Array(5) },
      { t: 'welcome', v: LINK_PROTOCOL_VERSION, kv: -1, from: 1, to: 2, inc: 3, nonce: new Uint8Array(32), mac: new Uint8Array(32) },
      { t: 'auth', mac: new Uint8Array(32), epoch: 0, view: { inc: 1 }, ack: 0 },
      { t: 'ready', epoch: 0, view: 'x', ack: 0 },
      { t: 'bye' },
      { t: 1 },
    ];
    for (const v of bad) expect(codeOf(() => parseLinkFrame(v, 32, 32)), JSON.stringify(v)).toBe('EDVSBADREQUEST');
  });

  it('refuses a hello or welcome of another link protocol version as such, whatever else it holds', () => {
    for (const v of [LINK_PROTOCOL_VERSION - 1, LINK_PROTOCOL_VERSION + 1, 0]) {
      expect(codeOf(() => parseLinkFrame({ t: 'hello', v, from: 1, to: 2 }, 32, 32))).toBe('EDVSPROTONOSUPPORT');
      expect(codeOf(() => parseLinkFrame({ t: 'welcome', v }, 32, 32))).toBe('EDVSPROTONOSUPPORT');
    }
    const hello = { t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 7, from: 1, to: 2, inc: 3, nonce: new Uint8Array(32) };
    expect(parseLinkFrame(hello, 32, 32)).toMatchObject({ t: 'hello', v: LINK_PROTOCOL_VERSION, kv: 7 });
  });
});
