/**
 * Grants and copies: a process grants a window of its memory (or of bytes a backend reaches, such
 * as a client OS process) to a grantee, and copies move bytes between grants and buffers in chunks,
 * locally at once, remotely with copy-read / copy-write / copy-relay frames and a window of chunks
 * in flight.
 */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef } from '../ipc/calls.js';
import { ANY, SELF, type Endpoint } from '../ipc/endpoint.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import { CALL_BIT } from '../ipc/privileges.js';
import { fail, type KernelCore } from './core.js';
import type { DcState } from './dc.js';
import type { CopyAckFrame, CopyDataFrame, CopyReadFrame, CopyRelayFrame, CopyWriteFrame } from './frames.js';
import type { Grant, GrantBackend, LocalProc } from './proc.js';
import { nodeOf } from './routes.js';
import { checkNotAborted, checkTimeout, Waiter } from './waiter.js';

function errnoOf(err: unknown): number {
  if (isDvsError(err)) return err.errno;
  return new DvsError('EDVSINVAL').errno;
}

export function checkCount(name: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0 || v > max) fail('EDVSRANGE', `${name} ${String(v)} outside 0..${max}`);
  return v;
}

/** A grant at one end of a copy: on this node, or on another. */
type GrantEnd =
  | { readonly kind: 'local'; readonly owner: LocalProc; readonly grant: number; readonly base: number }
  | { readonly kind: 'remote'; readonly node: number; readonly owner: Endpoint; readonly grant: number; readonly base: number };

/** Where a copy's bytes come from: a grant, or the caller's own buffer. */
type SourceEnd = GrantEnd | { readonly kind: 'memory'; read(at: number, len: number): Uint8Array };
/** Where they go: a grant, or the caller's own buffer. */
type SinkEnd = GrantEnd | { readonly kind: 'memory'; write(at: number, data: Uint8Array): void };

function badChunk(got: Uint8Array | undefined, len: number): DvsError {
  return new DvsError('EDVSPACKSIZE', `grant backend returned ${got instanceof Uint8Array ? got.byteLength : 'no'} bytes where ${len} were asked`);
}

export class Copies {
  constructor(private readonly k: KernelCore) {}

  // ---------------------------------------------------------------- grants

  grant(proc: LocalProc, buffer: Uint8Array, opts: GrantOptions, id?: number): number {
    if (!(buffer instanceof Uint8Array)) fail('EDVSBADVALUE', 'a grant needs a Uint8Array');
    const offset = checkCount('grant offset', opts.offset, 0, buffer.byteLength);
    const length = checkCount('grant length', opts.length, buffer.byteLength - offset, buffer.byteLength - offset);
    return this.add(proc, { buffer, backend: undefined }, offset, length, opts, id);
  }

  /** A grant whose bytes live elsewhere, reached through `backend`; `id` is the owner's choice when given. */
  grantExternal(proc: LocalProc, backend: GrantBackend, length: number, opts: GrantOptions, id?: number): number {
    checkCount('grant length', length, 0, Number.MAX_SAFE_INTEGER);
    return this.add(proc, { buffer: undefined, backend }, 0, length, opts, id);
  }

  private add(
    proc: LocalProc,
    bytes: { buffer: Uint8Array; backend: undefined } | { buffer: undefined; backend: GrantBackend },
    offset: number,
    length: number,
    opts: GrantOptions,
    requestedId: number | undefined,
  ): number {
    this.k.rendezvous.checkCaller(proc, CALL_BIT.grant);
    const access = opts.access;
    if (access !== 'read' && access !== 'write' && access !== 'readwrite') fail('EDVSBADVALUE', `grant access must be read, write or readwrite, got ${String(access)}`);
    if (opts.grantee !== ANY) proc.dc.space.checkEndpoint(opts.grantee);
    let id: number;
    if (requestedId === undefined) {
      while (proc.grants?.has(proc.nextGrant) === true) proc.nextGrant++;
      id = proc.nextGrant++;
    } else {
      if (!Number.isSafeInteger(requestedId) || requestedId <= 0) fail('EDVSBADVALUE', `grant id must be a positive integer, got ${String(requestedId)}`);
      if (proc.grants?.has(requestedId) === true) fail('EDVSEXIST', `grant ${requestedId} already exists`);
      id = requestedId;
    }
    const g: Grant = { id, ...bytes, offset, length, read: access !== 'write', write: access !== 'read', grantee: opts.grantee, whileWaiting: opts.whileWaiting ?? true };
    (proc.grants ??= new Map()).set(id, g);
    return id;
  }

  revoke(proc: LocalProc, id: number): void {
    if (proc.grants?.delete(id) !== true) fail('EDVSBADVALUE', `no grant ${id}`);
  }

  /** Checks a copy against the owner's grant and returns the grant; the owner is local. */
  private grantFor(owner: LocalProc, requester: Endpoint, id: number, offset: number, length: number, write: boolean): Grant {
    const g = owner.grants?.get(id);
    if (g === undefined) fail('EDVSBADVALUE', `endpoint ${owner.endpoint} has no grant ${id}`, { grant: id });
    if (g.grantee !== ANY && g.grantee !== requester && requester !== owner.endpoint) fail('EDVSACCES', `grant ${id} is not for endpoint ${requester}`, { grant: id });
    if (write ? !g.write : !g.read) fail('EDVSACCES', `grant ${id} does not allow ${write ? 'writing' : 'reading'}`, { grant: id });
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > g.length) {
      fail('EDVSRANGE', `bytes ${offset}..${offset + length} outside grant ${id} of ${g.length} bytes`, { grant: id });
    }
    if (g.whileWaiting && requester !== owner.endpoint && !isWaitingFor(owner, requester)) {
      fail('EDVSPROCSTS', `grant owner ${owner.endpoint} is not blocked in IPC with ${requester}`, { grant: id });
    }
    return g;
  }

  /** The end of a copy that `ref` names: the caller's own grant, a local owner's, or a remote one's. */
  private grantEnd(proc: LocalProc, ref: GrantRef, base: number): GrantEnd {
    const ownerEp = ref.owner === SELF ? proc.endpoint : ref.owner;
    if (ownerEp === proc.endpoint) return { kind: 'local', owner: proc, grant: ref.grant, base };
    const dc = proc.dc;
    const route = dc.routes.lookup(ownerEp);
    // A frozen endpoint still has its grants where it was until it is drained.
    const where = route.kind === 'frozen' ? route.previous : route;
    if (where.kind === 'local') return { kind: 'local', owner: where, grant: ref.grant, base };
    this.k.checkRoute(dc, where);
    return { kind: 'remote', node: nodeOf(where), owner: ownerEp, grant: ref.grant, base };
  }

  // ---------------------------------------------------------------- copies

  /** Copies from someone's grant into a local buffer, in chunks. */
  copyFrom(proc: LocalProc, src: GrantRef, into: Uint8Array, opts: CopyFromOptions | undefined): Promise<number> {
    try {
      if (!(into instanceof Uint8Array)) fail('EDVSBADVALUE', 'copyFrom needs a Uint8Array to copy into');
      const intoOffset = checkCount('intoOffset', opts?.intoOffset, 0, into.byteLength);
      const length = checkCount('length', opts?.length, into.byteLength - intoOffset, into.byteLength - intoOffset);
      return this.run(proc, src, { kind: 'memory', write: (at, data) => into.set(data, intoOffset + at) }, length, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Copies a local buffer into someone's grant, in chunks. */
  copyTo(proc: LocalProc, dst: GrantRef, data: Uint8Array, opts: CallOptions | undefined): Promise<number> {
    try {
      if (!(data instanceof Uint8Array)) fail('EDVSBADVALUE', 'copyTo needs a Uint8Array of data');
      return this.run(proc, { kind: 'memory', read: (at, len) => data.subarray(at, at + len) }, dst, data.byteLength, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Third-party copy between two grants, neither necessarily the caller's. */
  copy(proc: LocalProc, src: GrantRef, dst: GrantRef, length: number, opts: CallOptions | undefined): Promise<number> {
    try {
      checkCount('length', length, 0, Number.MAX_SAFE_INTEGER);
      return this.run(proc, src, dst, length, opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * The copy engine. Each chunk is read from the source (a grant, or the caller's buffer) and
   * written to the sink (a grant, or the caller's buffer); local chunks move at once, remote ones
   * travel as copy-read / copy-write frames with up to `copyWindow` chunks in flight. When both
   * grants live on other nodes, the source's node moves each chunk straight to the destination.
   */
  private run(proc: LocalProc, srcRef: GrantRef | SourceEnd, dstRef: GrantRef | SinkEnd, length: number, opts: CallOptions | undefined): Promise<number> {
    this.k.rendezvous.checkCaller(proc, CALL_BIT.copy);
    checkTimeout(opts);
    checkNotAborted(opts);
    if (proc.copying) fail('EDVSBUSY', 'a copy is already in progress for this process');
    const src: SourceEnd = 'kind' in srcRef ? srcRef : this.grantEnd(proc, srcRef, checkCount('source offset', srcRef.offset, 0, Number.MAX_SAFE_INTEGER));
    const dst: SinkEnd = 'kind' in dstRef ? dstRef : this.grantEnd(proc, dstRef, checkCount('destination offset', dstRef.offset, 0, Number.MAX_SAFE_INTEGER));
    const me = proc.endpoint;
    // Validate both local ends up front so a bad request fails before any byte moves.
    if (src.kind === 'local') this.grantFor(src.owner, me, src.grant, src.base, length, false);
    if (dst.kind === 'local') this.grantFor(dst.owner, me, dst.grant, dst.base, length, true);
    const chunk = this.k.limits.maxCopyChunk;

    const inMemory = (end: SourceEnd | SinkEnd): end is Exclude<SourceEnd | SinkEnd, { kind: 'remote' }> =>
      end.kind === 'memory' || (end.kind === 'local' && end.owner.grants?.get(end.grant)?.buffer !== undefined);
    if (inMemory(src) && inMemory(dst)) {
      for (let at = 0; at < length; at += chunk) {
        const len = Math.min(chunk, length - at);
        const data = src.kind === 'local' ? this.readMemory(src.owner, me, src.grant, src.base + at, len) : src.read(at, len);
        if (dst.kind === 'local') void this.writeLocal(dst.owner, me, dst.grant, dst.base + at, data);
        else dst.write(at, data);
      }
      proc.counters.lclCopies++;
      return Promise.resolve(length);
    }

    proc.copying = true;
    proc.counters.rmtCopies++;
    const waiter = new Waiter<number>();
    let next = 0;
    let inFlight = 0;
    let failed = false;
    const finish = (err: DvsError | undefined): void => {
      if (waiter.settled) return;
      proc.copying = false;
      if (err !== undefined) waiter.reject(err);
      else waiter.resolve(length);
    };
    const moveChunk = (at: number, len: number): Promise<void> => {
      // Both grants on other nodes: the source's node moves each chunk to the destination itself.
      if (src.kind === 'remote' && dst.kind === 'remote') return this.relayChunk(proc, src, dst, at, len);
      return this.readChunk(proc, src, at, len).then((data) => this.writeChunk(proc, dst, at, data));
    };
    const pump = (): void => {
      while (!failed && !waiter.settled && inFlight < this.k.copyWindow && next < length) {
        const at = next;
        const len = Math.min(chunk, length - at);
        next += len;
        inFlight++;
        moveChunk(at, len).then(
          () => {
            inFlight--;
            if (next >= length && inFlight === 0) finish(undefined);
            else pump();
          },
          (err: unknown) => {
            inFlight--;
            failed = true;
            finish(isDvsError(err) ? err : new DvsError('EDVSIO', String(err)));
          },
        );
      }
    };
    if (opts !== undefined) {
      waiter.arm(this.k.clock, opts, () => {
        failed = true;
        proc.copying = false;
        waiter.rejectExpired();
      });
    }
    if (length === 0) finish(undefined);
    else pump();
    return waiter.promise;
  }

  /** Bytes of an in-memory grant window (a view, not a copy). */
  private readMemory(owner: LocalProc, requester: Endpoint, grant: number, offset: number, len: number): Uint8Array {
    const g = this.grantFor(owner, requester, grant, offset, len, false);
    const start = g.offset + offset;
    if (g.buffer === undefined) fail('EDVSINVAL', `grant ${grant} is not in memory`);
    return g.buffer.subarray(start, start + len);
  }

  /** Bytes of a grant window: a view of in-process memory, or a promise of bytes from its backend. */
  private readLocal(owner: LocalProc, requester: Endpoint, grant: number, offset: number, len: number): Uint8Array | Promise<Uint8Array> {
    const g = this.grantFor(owner, requester, grant, offset, len, false);
    const start = g.offset + offset;
    if (g.buffer === undefined) return g.backend.read(start, len);
    return g.buffer.subarray(start, start + len);
  }

  private writeLocal(owner: LocalProc, requester: Endpoint, grant: number, offset: number, data: Uint8Array): void | Promise<void> {
    const g = this.grantFor(owner, requester, grant, offset, data.byteLength, true);
    if (g.buffer === undefined) return g.backend.write(g.offset + offset, data);
    g.buffer.set(data, g.offset + offset);
  }

  private readChunk(proc: LocalProc, src: SourceEnd, at: number, len: number): Promise<Uint8Array> {
    if (src.kind === 'memory') return Promise.resolve(src.read(at, len));
    const offset = src.base + at;
    if (src.kind === 'local') {
      try {
        const data = this.readLocal(src.owner, proc.endpoint, src.grant, offset, len);
        // Copy out: the bytes may travel on after the owner's buffer changes.
        if (data instanceof Uint8Array) return Promise.resolve(data.slice());
        return data.then((bytes) => {
          if (!(bytes instanceof Uint8Array) || bytes.byteLength !== len) throw badChunk(bytes, len);
          return bytes;
        });
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const dc = proc.dc;
    return this.k.remote.chunkRequest(dc, src.node, proc, (id) => ({ k: 'copy-read', dc: dc.dcid, id, requester: proc.endpoint, owner: src.owner, grant: src.grant, offset, length: len })).then((data) => {
      if (data === undefined || data.byteLength !== len) throw new DvsError('EDVSPACKSIZE', `copy chunk of ${data?.byteLength ?? 0} bytes where ${len} were asked`);
      return data;
    });
  }

  private writeChunk(proc: LocalProc, dst: SinkEnd, at: number, data: Uint8Array): Promise<void> {
    if (dst.kind === 'memory') {
      dst.write(at, data);
      return Promise.resolve();
    }
    const offset = dst.base + at;
    if (dst.kind === 'local') {
      try {
        return this.writeLocal(dst.owner, proc.endpoint, dst.grant, offset, data) ?? Promise.resolve();
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const dc = proc.dc;
    const bytes = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    return this.k.remote.chunkRequest(dc, dst.node, proc, (id) => ({ k: 'copy-write', dc: dc.dcid, id, requester: proc.endpoint, owner: dst.owner, grant: dst.grant, offset, data: bytes })).then(() => undefined);
  }

  private relayChunk(proc: LocalProc, src: GrantEnd & { kind: 'remote' }, dst: GrantEnd & { kind: 'remote' }, at: number, len: number): Promise<void> {
    const dc = proc.dc;
    return this.k.remote
      .chunkRequest(dc, src.node, proc, (id) => ({
        k: 'copy-relay',
        dc: dc.dcid,
        id,
        requester: proc.endpoint,
        owner: src.owner,
        grant: src.grant,
        offset: src.base + at,
        length: len,
        dstNode: dst.node,
        dstOwner: dst.owner,
        dstGrant: dst.grant,
        dstOffset: dst.base + at,
      }))
      .then(() => undefined);
  }

  // ---------------------------------------------------------------- copy frames from other nodes

  onCopyRead(dc: DcState, from: number, frame: CopyReadFrame): void {
    const owner = this.k.localProc(dc, frame.owner);
    const data = this.readLocal(owner, frame.requester, frame.grant, frame.offset, frame.length);
    if (data instanceof Uint8Array) {
      this.k.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: 0, data: data.slice() } satisfies CopyDataFrame);
      return;
    }
    data.then(
      (bytes) => this.k.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: 0, data: bytes }),
      (err: unknown) => this.k.emit(from, { k: 'copy-data', dc: dc.dcid, id: frame.id, rc: errnoOf(err) }),
    );
  }

  onCopyWrite(dc: DcState, from: number, frame: CopyWriteFrame): void {
    const owner = this.k.localProc(dc, frame.owner);
    if (!(frame.data instanceof Uint8Array)) fail('EDVSBADVALUE', 'copy-write without bytes');
    const done = this.writeLocal(owner, frame.requester, frame.grant, frame.offset, frame.data);
    if (done === undefined) {
      this.k.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: 0 } satisfies CopyAckFrame);
      return;
    }
    done.then(
      () => this.k.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: 0 }),
      (err: unknown) => this.k.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc: errnoOf(err) }),
    );
  }

  /**
   * A chunk of another node's third-party copy whose source grant lives here: read it (checked for
   * the requester) and store it at the destination (checked there for the same requester), then ack.
   */
  onCopyRelay(dc: DcState, from: number, frame: CopyRelayFrame): void {
    const owner = this.k.localProc(dc, frame.owner);
    const read = this.readLocal(owner, frame.requester, frame.grant, frame.offset, frame.length);
    const store = (bytes: Uint8Array): void | Promise<unknown> => {
      if (frame.dstNode === this.k.nodeId) return this.writeLocal(this.k.localProc(dc, frame.dstOwner), frame.requester, frame.dstGrant, frame.dstOffset, bytes);
      if (!dc.nodes.has(frame.dstNode)) fail('EDVSNODCNODE', `node ${frame.dstNode} is not a member of DC ${dc.dcid}`);
      if (this.k.downNodes.has(frame.dstNode)) fail('EDVSNOTCONN', `node ${frame.dstNode} is down`, { node: frame.dstNode });
      // Copied out of in-process memory: the bytes travel on after the owner's buffer may change.
      const data = read instanceof Uint8Array ? bytes.slice() : bytes;
      return this.k.remote.chunkRequest(dc, frame.dstNode, undefined, (id) => ({ k: 'copy-write', dc: dc.dcid, id, requester: frame.requester, owner: frame.dstOwner, grant: frame.dstGrant, offset: frame.dstOffset, data }));
    };
    const answer = (rc: number): void => this.k.emit(from, { k: 'copy-ack', dc: dc.dcid, id: frame.id, rc } satisfies CopyAckFrame);
    Promise.resolve(read)
      .then((bytes) => {
        if (!(bytes instanceof Uint8Array) || bytes.byteLength !== frame.length) throw badChunk(bytes, frame.length);
        return store(bytes);
      })
      .then(
        () => answer(0),
        (err: unknown) => answer(errnoOf(err)),
      );
  }
}

function isWaitingFor(owner: LocalProc, peer: Endpoint): boolean {
  return (owner.recv !== undefined && owner.recv.from === peer) || (owner.sending > 0 && owner.sendto === peer);
}
