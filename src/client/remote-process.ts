/**
 * RemoteProcess: an endpoint bound through the node daemon, with the same M3-IPC API as the
 * in-process `Process`. Every call is one request on the client's socket; the rendezvous state lives
 * in the daemon's kernel. Grants are the exception: their bytes stay here, and the daemon reads or
 * writes them through grant-read / grant-write requests while someone copies. A service that can
 * move between nodes gives its state through `onSnapshot` and finds it again in `restored` on the
 * node it moved to (docs/protocol.md, Migration).
 */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef, M3Ipc, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import { ANY, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { checkMessageType, type Message, type OutgoingMessage } from '../ipc/message.js';
import { checkPayload } from '../ipc/payload.js';
import { asInt, isPlainMap, type BindResult, type Fields, type MovedEvent } from '../transport/proc-protocol.js';
import type { DvsClient, ResultMap } from './client.js';

interface LocalGrant {
  readonly buffer: Uint8Array;
  readonly offset: number;
  readonly length: number;
  readonly read: boolean;
  readonly write: boolean;
}

/** What a service gives when the daemon asks for its state before a move: bytes, or undefined when it is stateless. */
export type SnapshotHook = () => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/** Where the endpoint went: the node it lives on now, from route `epoch`. */
export type MovedInfo = Pick<MovedEvent, 'node' | 'epoch'>;

const NOTIFY_OUTCOMES: readonly string[] = ['delivered', 'pending', 'overrun', 'sent'];

/**
 * Copies longer than this run as one third-party copy between the far grant and a grant of the
 * caller's own buffer: the daemon's kernel moves the chunks with its copy window, fetching them
 * from (or storing them into) this process as they go. Shorter ones are a single request.
 */
const STREAM_COPY_MIN_BYTES = 1024 * 1024;

function rejectWith<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

function checkEndpointArg(name: string, ep: unknown): Endpoint {
  if (typeof ep !== 'number' || !Number.isSafeInteger(ep)) throw new DvsError('EDVSENDPOINT', `${name}: not a process endpoint: ${String(ep)}`);
  return ep;
}

function count(name: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new DvsError('EDVSRANGE', `${name} ${String(v)} outside 0..${max}`);
  return v;
}

function toVoid(): undefined {
  return undefined;
}

function toMessage(r: unknown): Message {
  if (!isPlainMap(r)) throw new DvsError('EDVSBADREQUEST', 'malformed message from the daemon');
  const source = asInt(r.source);
  const type = asInt(r.type);
  if (source === undefined || type === undefined) throw new DvsError('EDVSBADREQUEST', 'malformed message from the daemon');
  return { source, type, payload: r.payload as Message['payload'] };
}

export class RemoteProcess implements M3Ipc {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly slot: number;
  readonly generation: number;
  /** A system process may receiveRequest, reply, notify and be notified. */
  readonly system: boolean;
  /** The state the endpoint's previous incarnation gave before it moved here (absent on a fresh bind, or when it was stateless). */
  readonly restored: Uint8Array | undefined;
  /** True when this is the endpoint of a service moved here from another node. */
  readonly migrated: boolean;
  private readonly client: DvsClient;
  private alive = true;
  private snapshotHook: SnapshotHook | undefined;
  private movedTo: MovedInfo | undefined;
  private readonly movedCallback: ((info: MovedInfo) => void) | undefined;
  private readonly grants = new Map<number, LocalGrant>();
  private nextGrant = 1;

  /** @internal Created by DvsClient.bind, with the whole restored state. */
  constructor(client: DvsClient, r: BindResult, restored: Uint8Array | undefined, onMoved: ((info: MovedInfo) => void) | undefined) {
    this.client = client;
    this.restored = restored;
    this.migrated = r.migrated === true;
    this.movedCallback = onMoved;
    this.dcid = r.dcid;
    this.endpoint = r.endpoint;
    this.name = r.name;
    this.slot = r.slot;
    this.generation = r.generation;
    this.system = r.system;
  }

  /** False after unbind, once the endpoint moved to another node, or once the daemon connection is gone. */
  get bound(): boolean {
    return this.alive && !this.client.closed;
  }

  /** Where the endpoint moved to, once the daemon said so (it is then no longer bound here). */
  get moved(): MovedInfo | undefined {
    return this.movedTo;
  }

  /**
   * How this service gives its state when the daemon asks for it before a move (it is then blocked
   * in a receive): the bytes, at most MAX_SNAPSHOT_BYTES, or undefined. A hook that throws a
   * DvsError refuses with it (EDVSMIGRATE: not movable now). Without a hook the service is stateless.
   */
  onSnapshot(hook: SnapshotHook | undefined): void {
    this.snapshotHook = hook;
  }

  /** @internal The state for a snapshot request. */
  snapshot(): Promise<Uint8Array | undefined> {
    const hook = this.snapshotHook;
    if (hook === undefined) return Promise.resolve(undefined);
    // A hook that throws synchronously refuses like one that rejects.
    return new Promise<Uint8Array | undefined>((resolve) => resolve(hook()));
  }

  // The message calls build their request frame once and map the result in the response handler:
  // they are the hot path (no spread copies of the fields, no extra promise per call).

  send(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<void> {
    return this.messageCall('send', dst, msg, opts, toVoid) as Promise<void>;
  }

  receive(src: Endpoint, opts?: CallOptions): Promise<Message> {
    try {
      return this.request({ id: 0, op: 'receive', dcid: this.dcid, endpoint: this.endpoint, src: checkEndpointArg('src', src) }, opts, toMessage) as Promise<Message>;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  sendrec(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.messageCall('sendrec', dst, msg, opts, toMessage) as Promise<Message>;
  }

  receiveRequest(opts?: CallOptions): Promise<Message> {
    return this.request({ id: 0, op: 'receiveRequest', dcid: this.dcid, endpoint: this.endpoint }, opts, toMessage) as Promise<Message>;
  }

  reply(dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    return this.messageCall('reply', dst, msg, undefined, toVoid) as Promise<void>;
  }

  replyAndReceive(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.messageCall('replyAndReceive', dst, msg, opts, toMessage) as Promise<Message>;
  }

  notify(dst: Endpoint, opts?: NotifyOptions): Promise<NotifyOutcome> {
    return rejectWith(() => {
      const arg = opts?.arg;
      if (arg !== undefined && (typeof arg !== 'number' || !Number.isInteger(arg) || arg < 0 || arg > 0xffffffff)) throw new DvsError('EDVSBADVALUE', 'notify arg must be a 32-bit unsigned integer');
      return this.call('notify', { dst: checkEndpointArg('dst', dst), arg });
    }).then((r) => {
      if (typeof r !== 'string' || !NOTIFY_OUTCOMES.includes(r)) throw new DvsError('EDVSBADREQUEST', 'malformed notify result from the daemon');
      return r as NotifyOutcome;
    });
  }

  /**
   * Exposes a window of `buffer`. Synchronous like the in-process call: the id is chosen here and
   * the registration is sent at once, so the daemon has it before any later request of this client.
   * A refusal by the daemon (e.g. EDVSBADCALL) goes to `onAsyncError` and drops the grant.
   */
  grant(buffer: Uint8Array, opts: GrantOptions): number {
    this.checkUsable();
    if (!(buffer instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'a grant needs a Uint8Array');
    const offset = count('grant offset', opts.offset, 0, buffer.byteLength);
    const length = count('grant length', opts.length, buffer.byteLength - offset, buffer.byteLength - offset);
    const access = opts.access;
    if (access !== 'read' && access !== 'write' && access !== 'readwrite') throw new DvsError('EDVSBADVALUE', `grant access must be read, write or readwrite, got ${String(access)}`);
    const grantee = opts.grantee;
    if (grantee !== ANY) checkEndpointArg('grantee', grantee);
    const id = this.nextGrant++;
    const g: LocalGrant = { buffer, offset, length, read: access !== 'write', write: access !== 'read' };
    this.grants.set(id, g);
    this.call('grant', { grant: id, length, access, grantee, whileWaiting: opts.whileWaiting ?? true }).catch((err: unknown) => {
      if (this.grants.get(id) === g) this.grants.delete(id);
      if (err instanceof DvsError && err.code !== 'EDVSNOTCONN') this.client.reportAsync(err);
    });
    return id;
  }

  revoke(grant: number): void {
    this.checkUsable();
    if (!this.grants.delete(grant)) throw new DvsError('EDVSBADVALUE', `no grant ${String(grant)}`);
    this.call('revoke', { grant }).catch((err: unknown) => {
      if (err instanceof DvsError && err.code !== 'EDVSNOTCONN') this.client.reportAsync(err);
    });
  }

  /** Copies from someone's grant into `into`; pieces above the daemon's per-request limit go as several requests. */
  copyFrom(src: GrantRef, into: Uint8Array, opts?: CopyFromOptions): Promise<number> {
    return rejectWith(async () => {
      if (!(into instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'copyFrom needs a Uint8Array to copy into');
      const intoOffset = count('intoOffset', opts?.intoOffset, 0, into.byteLength);
      const length = count('length', opts?.length, into.byteLength - intoOffset, into.byteLength - intoOffset);
      const ref = this.ref(src);
      if (length > STREAM_COPY_MIN_BYTES) {
        const streamed = await this.viaOwnGrant(into, intoOffset, length, 'write', (grant) => this.call('copy', { src: ref, dst: { owner: this.endpoint, grant, offset: 0 }, length }, opts));
        if (streamed) return length;
      }
      const piece = this.client.maxCopyBytes;
      const deadline = this.deadline(opts);
      let done = 0;
      do {
        const n = Math.min(piece, length - done);
        const data = await this.call('copyFrom', { owner: ref.owner, grant: ref.grant, offset: ref.offset + done, length: n }, this.remaining(opts, deadline));
        if (!(data instanceof Uint8Array) || data.byteLength !== n) throw new DvsError('EDVSPACKSIZE', 'copyFrom answered with the wrong number of bytes');
        into.set(data, intoOffset + done);
        done += n;
      } while (done < length);
      return length;
    });
  }

  /** Copies `data` into someone's grant, in pieces of at most the daemon's per-request limit. */
  copyTo(dst: GrantRef, data: Uint8Array, opts?: CallOptions): Promise<number> {
    return rejectWith(async () => {
      if (!(data instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'copyTo needs a Uint8Array of data');
      const ref = this.ref(dst);
      if (data.byteLength > STREAM_COPY_MIN_BYTES) {
        const streamed = await this.viaOwnGrant(data, 0, data.byteLength, 'read', (grant) => this.call('copy', { src: { owner: this.endpoint, grant, offset: 0 }, dst: ref, length: data.byteLength }, opts));
        if (streamed) return data.byteLength;
      }
      const piece = this.client.maxCopyBytes;
      const deadline = this.deadline(opts);
      let done = 0;
      do {
        const n = Math.min(piece, data.byteLength - done);
        await this.call('copyTo', { owner: ref.owner, grant: ref.grant, offset: ref.offset + done, data: data.subarray(done, done + n) }, this.remaining(opts, deadline));
        done += n;
      } while (done < data.byteLength);
      return data.byteLength;
    });
  }

  /** Third-party copy between two grants, done by the daemon's kernel in one request. */
  copy(src: GrantRef, dst: GrantRef, length: number, opts?: CallOptions): Promise<number> {
    return rejectWith(() => {
      const s = this.ref(src);
      const d = this.ref(dst);
      count('length', length, 0, Number.MAX_SAFE_INTEGER);
      return this.call('copy', { src: s, dst: d, length }, opts);
    }).then((n) => asInt(n) ?? length);
  }

  unbind(): Promise<void> {
    if (!this.alive) return Promise.resolve();
    this.alive = false;
    this.grants.clear();
    this.client.forget(this);
    if (this.client.closed) return Promise.resolve();
    return this.client.call('unbind', { dcid: this.dcid, endpoint: this.endpoint }).then(
      () => undefined,
      (err: unknown) => {
        // Gone already (connection lost, or unbound by the kernel): the outcome unbind asked for.
        if (err instanceof DvsError && (err.code === 'EDVSNOTCONN' || err.code === 'EDVSNOTBIND')) return;
        throw err;
      },
    );
  }

  // ---------------------------------------------------------------- served to the daemon

  /** @internal Bytes of grant `id` for a grant-read: a view, encoded into the answer at once. */
  readGrant(id: number, offset: number, length: number): Uint8Array {
    const g = this.window(id, offset, length);
    if (!g.read) throw new DvsError('EDVSACCES', `grant ${id} does not allow reading`, { details: { grant: id } });
    return g.buffer.subarray(g.offset + offset, g.offset + offset + length);
  }

  /** @internal Stores the bytes of a grant-write. */
  writeGrant(id: number, offset: number, data: Uint8Array): void {
    const g = this.window(id, offset, data.byteLength);
    if (!g.write) throw new DvsError('EDVSACCES', `grant ${id} does not allow writing`, { details: { grant: id } });
    g.buffer.set(data, g.offset + offset);
  }

  /** @internal The daemon said the endpoint moved: it lives on at `info.node`, nothing is unbound. */
  markMoved(info: MovedInfo): void {
    this.alive = false;
    this.grants.clear();
    this.movedTo = info;
    try {
      this.movedCallback?.(info);
    } catch (err) {
      // A faulty callback must not break the connection.
      this.client.reportAsync(err instanceof DvsError ? err : new DvsError('EDVSIO', `onMoved failed: ${String(err)}`));
    }
  }

  /** @internal The connection is gone: the daemon unbound this endpoint. */
  markGone(): void {
    this.alive = false;
    this.grants.clear();
  }

  // ---------------------------------------------------------------- helpers

  private window(id: number, offset: number, length: number): LocalGrant {
    const g = this.grants.get(id);
    if (g === undefined) throw new DvsError('EDVSBADVALUE', `endpoint ${this.endpoint} has no grant ${id}`, { details: { grant: id } });
    if (offset < 0 || length < 0 || offset + length > g.length) throw new DvsError('EDVSRANGE', `bytes ${offset}..${offset + length} outside grant ${id} of ${g.length} bytes`, { details: { grant: id } });
    return g;
  }

  private checkUsable(): void {
    if (this.client.closed) throw this.client.notConnected();
    if (!this.alive) throw new DvsError('EDVSNOTBIND', 'the calling process is no longer bound');
  }

  private call(op: string, fields: Fields, opts?: CallOptions): Promise<unknown> {
    return this.unboundError() ?? this.client.call(op, { dcid: this.dcid, endpoint: this.endpoint, ...fields }, opts);
  }

  /** Sends a request frame built by this process (see DvsClient.request). */
  private request(frame: Fields, opts: CallOptions | undefined, map: ResultMap): Promise<unknown> {
    return this.unboundError() ?? this.client.request(frame, opts, map);
  }

  /** The failure of a call made after this process was unbound (a closed client reports its own). */
  private unboundError(): Promise<never> | undefined {
    return !this.alive && !this.client.closed ? Promise.reject(new DvsError('EDVSNOTBIND', 'the calling process is no longer bound')) : undefined;
  }

  /** A request carrying a message to `dst`, checked here as the kernel would, so oversized payloads never leave. */
  private messageCall(op: string, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined, map: ResultMap): Promise<unknown> {
    try {
      const to = checkEndpointArg('dst', dst);
      if (msg === null || typeof msg !== 'object') throw new DvsError('EDVSBADVALUE', 'a message must be an object { type, payload? }');
      checkMessageType(msg.type);
      checkPayload(msg.payload, this.client.info.maxPayloadBytes);
      const frame: Fields = msg.payload === undefined ? { id: 0, op, dcid: this.dcid, endpoint: this.endpoint, dst: to, type: msg.type } : { id: 0, op, dcid: this.dcid, endpoint: this.endpoint, dst: to, type: msg.type, payload: msg.payload };
      return this.request(frame, opts, map);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * Runs `copy` with a grant of `buffer[offset, offset + length)` that only this endpoint may use,
   * revoked afterwards (so no late chunk can touch the buffer once the call has returned). False,
   * with nothing copied, when this process may not grant (EDVSBADCALL) or holds as many grants as
   * the daemon allows (EDVSNOSPC): the caller copies piecewise.
   */
  private async viaOwnGrant(buffer: Uint8Array, offset: number, length: number, access: 'read' | 'write', copy: (grant: number) => Promise<unknown>): Promise<boolean> {
    const id = this.nextGrant++;
    this.grants.set(id, { buffer, offset, length, read: access === 'read', write: access === 'write' });
    try {
      try {
        await this.call('grant', { grant: id, length, access, grantee: this.endpoint, whileWaiting: false });
      } catch (err) {
        if (err instanceof DvsError && (err.code === 'EDVSBADCALL' || err.code === 'EDVSNOSPC')) return false;
        throw err;
      }
      await copy(id);
      return true;
    } finally {
      this.grants.delete(id);
      this.call('revoke', { grant: id }).catch(() => undefined);
    }
  }

  private ref(r: GrantRef): { owner: Endpoint; grant: number; offset: number } {
    if (r === null || typeof r !== 'object') throw new DvsError('EDVSBADVALUE', 'a grant reference must be { owner, grant, offset? }');
    const owner = checkEndpointArg('owner', r.owner);
    if (typeof r.grant !== 'number' || !Number.isSafeInteger(r.grant) || r.grant < 0) throw new DvsError('EDVSBADVALUE', `no grant ${String(r.grant)}`);
    return { owner, grant: r.grant, offset: count('grant offset', r.offset, 0, Number.MAX_SAFE_INTEGER) };
  }

  private deadline(opts: CallOptions | undefined): number | undefined {
    const t = opts?.timeoutMs;
    return t === undefined || t < 0 ? undefined : Date.now() + t;
  }

  /** The caller's options for the next piece of a split copy: what is left of its timeout. */
  private remaining(opts: CallOptions | undefined, deadline: number | undefined): CallOptions | undefined {
    if (opts === undefined || deadline === undefined) return opts;
    return { ...opts, timeoutMs: Math.max(0, deadline - Date.now()) };
  }
}
