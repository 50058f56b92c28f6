/**
 * The client library: an OS process's connection to its node daemon over the process socket
 * (docs/protocol.md). `connect` authenticates; `bind` returns a `RemoteProcess`, the same M3-IPC
 * API as the in-process `Process`. Calls are pipelined on one socket (the requests of one
 * event-loop turn leave in one write) and complete out of order;
 * the daemon fetches the bytes of this process's grants from it when someone copies, and asks a
 * movable service for its state (RemoteProcess.onSnapshot) before it moves to another node.
 */
import { createConnection, type Socket } from 'node:net';
import type { AbortLike, CallOptions } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { IdTable } from '../kernel/id-table.js';
import type { ProcInfo } from '../kernel/procfs.js';
import { DEFAULT_PROC_MAX_FRAME_BYTES, FRAME_OVERHEAD_BYTES, MAX_SNAPSHOT_BYTES, MAX_TIMEOUT_MS, PROC_PROTOCOL_VERSION, asInt, fromWireError, isPlainMap, toWireError, type BindResult, type Fields, type HelloResult } from '../transport/proc-protocol.js';
import { checkToken, readTokenFile } from '../transport/proc-token.js';
import { BatchWriter } from '../transport/batch-writer.js';
import { encodeFrameSegments, FrameDecoder, type FramingOptions } from '../transport/framing.js';
import { SocketReads } from '../transport/socket-reads.js';
import type { RunInfo, RunRequest, StopSignal } from '../transport/run-spec.js';
import { RemoteProcess, type MovedInfo } from './remote-process.js';

export interface ConnectOptions {
  /** The daemon's process socket, e.g. `<dataDir>/dvsd.sock`. */
  readonly socketPath: string;
  /** The daemon's token, or `tokenPath`: the file holding it. */
  readonly token?: string;
  readonly tokenPath?: string;
  /** A name for this connection in the daemon's logs (at most 64 characters). */
  readonly name?: string;
  /** Bound on connecting and authenticating (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * How long past a call's own timeout, or past an abort, the client waits for the daemon's answer
   * before failing the call locally (default 2 s). The daemon normally answers first, truthfully.
   */
  readonly localGraceMs?: number;
  /**
   * Announce and use LZ4 for large frames (default false): over a local socket compressing costs more
   * than it saves (a remote sendrec of a 60 KB payload ran at 550-620/s with it, 830-930/s without).
   * Links between nodes compress on their own (`compressMinBytes` in the node configuration).
   */
  readonly compress?: boolean;
  /** Failures of `grant`/`revoke`, which return before the daemon answers. */
  readonly onAsyncError?: (err: DvsError) => void;
  /**
   * The daemon's run this process is (hello field `run`), so the daemon lists its endpoints with the
   * run; default: env DVS_RUN, which the daemon sets for the programs it starts.
   */
  readonly run?: number;
}

/** DVS_RUN as a run number; absent or malformed: none. */
function runOfEnv(): number | undefined {
  const v = process.env.DVS_RUN;
  const n = v === undefined || !/^[1-9][0-9]*$/.test(v) ? undefined : Number(v);
  return n !== undefined && Number.isSafeInteger(n) ? n : undefined;
}

/** What `bind` asks for, with the call's timeout and abort signal. */
export interface ClientBindOptions extends CallOptions {
  /** Bind this slot, at its next generation. */
  readonly slot?: number;
  /** Bind exactly this endpoint (slot and generation); EDVSENDPOINT when that generation cannot be had. */
  readonly endpoint?: Endpoint;
  readonly name?: string;
  /**
   * Called once the endpoint moved to another node (the `moved` event): it is no longer bound here
   * and lives on at `info.node`. A program run for one service typically exits 0 here.
   */
  readonly onMoved?: (info: MovedInfo) => void;
}

/** The daemon's view of its node (the `info` request). */
export interface NodeInfo {
  readonly nodeId: number;
  readonly running: boolean;
  readonly dcs: readonly { dcid: number; name: string; nodes: number[]; localProcs: number; remoteProcs: number }[];
  readonly limits: { maxPayloadBytes: number; maxCopyChunk: number };
  readonly downNodes: number[];
  readonly connection: number;
  readonly endpoints: readonly { dcid: number; endpoint: Endpoint; name: string }[];
  /** The daemon's own state for operators (registration, link, store and socket counters), when it reports one. */
  readonly node?: Readonly<Record<string, unknown>>;
}

/** A result converter applied before the call resolves (it may throw a DvsError). */
export type ResultMap = (result: unknown) => unknown;

/** What to do with a success that arrives after its call failed locally (a bind undoes its endpoint). */
export type LateSuccess = (result: unknown) => void;

interface PendingCall {
  readonly id: number;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: DvsError) => void;
  readonly map: ResultMap | undefined;
  readonly late: LateSuccess | undefined;
  /** The local guard timer and the abort wiring, when the call has a timeout or a signal. */
  guard: NodeJS.Timeout | undefined;
  signal: AbortLike | undefined;
  onAbort: (() => void) | undefined;
}

const ONCE = { once: true } as const;

function cleanup(entry: PendingCall): void {
  if (entry.guard !== undefined) clearTimeout(entry.guard);
  if (entry.onAbort !== undefined) entry.signal?.removeEventListener('abort', entry.onAbort);
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_GRACE_MS = 2000;
/** A daemon announcing more than this (10 min, the longest failure detection it accepts) is not believed. */
const MAX_SETTLE_MS = 600_000;
const CLIENT_DECODE_LIMIT = 256 * 1024 * 1024;
const COMPRESS_MIN_BYTES = 16 * 1024;

function procKey(dcid: number, endpoint: Endpoint): string {
  return `${dcid}:${endpoint}`;
}

/** Validates a timeout option the way the kernel does (EDVSBADVALUE). */
export function checkCallTimeout(opts: CallOptions | undefined): number | undefined {
  const t = opts?.timeoutMs;
  if (t === undefined) return undefined;
  if (typeof t !== 'number' || Number.isNaN(t) || (t < 0 && t !== -1) || t > MAX_TIMEOUT_MS) {
    throw new DvsError('EDVSBADVALUE', `timeoutMs must be -1 or in 0..${MAX_TIMEOUT_MS}, got ${String(t)}`);
  }
  return t;
}

export class DvsClient {
  /** What the daemon said in hello: its node, protocol version and limits. */
  info!: HelloResult;
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly graceMs: number;
  private readonly compress: boolean;
  private readonly onAsyncError: ((err: DvsError) => void) | undefined;
  /** Calls in flight, by id (a ring: no Map churn per call). */
  private pending = new IdTable<PendingCall>();
  private readonly bound = new Map<string, RemoteProcess>();
  /** Calls failed locally whose success must still be undone when it arrives, by id. */
  private readonly lateAnswers = new Map<number, LateSuccess>();
  /** Pieces of a bind's restored state that came as `restored` events before its result, by request id. */
  private readonly restoredPieces = new Map<number, Uint8Array[]>();
  private nextId = 1;
  private readonly out: BatchWriter;
  /** How frames are encoded: the frame limit (the daemon's, once hello told it) and compression. */
  private encoding: FramingOptions = { maxFrameBytes: DEFAULT_PROC_MAX_FRAME_BYTES };
  /** How long past its timeout a call may still be settling in the daemon (announced in hello). */
  private settleMs = 0;
  private closeError: DvsError | undefined;
  private byeReason: DvsError | undefined;
  private readonly closedPromise: Promise<void>;

  /**
   * @internal Use `connect`. With `reads`, the socket delivers its bytes through `onread` into one
   * reused buffer (see SocketReads) instead of a fresh Buffer and a stream event per read.
   */
  constructor(socket: Socket, opts: ConnectOptions, reads?: SocketReads) {
    this.socket = socket;
    // Our own daemon is trusted to announce only frames it sends: large ones assemble as they arrive.
    this.decoder = new FrameDecoder({ maxFrameBytes: CLIENT_DECODE_LIMIT, transientChunks: reads !== undefined, assembleLargeFrames: true });
    this.out = new BatchWriter(socket);
    this.graceMs = opts.localGraceMs ?? DEFAULT_GRACE_MS;
    this.compress = opts.compress ?? false;
    if (this.compress) this.encoding = { ...this.encoding, compressMinBytes: COMPRESS_MIN_BYTES };
    this.onAsyncError = opts.onAsyncError;
    this.closedPromise = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    if (reads === undefined) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    else reads.deliverTo((chunk) => this.onData(chunk));
    socket.on('error', (err) => {
      this.byeReason ??= new DvsError('EDVSCONNRESET', err.message);
    });
    socket.on('close', () => this.onClose());
  }

  /** True once the connection to the daemon is gone. */
  get closed(): boolean {
    return this.closeError !== undefined;
  }

  /** Endpoints bound through this connection and not unbound. */
  get processes(): RemoteProcess[] {
    return [...this.bound.values()];
  }

  /** Largest copyFrom/copyTo piece the daemon takes in one request. */
  get maxCopyBytes(): number {
    return this.info.maxCopyBytes;
  }

  /**
   * Binds an endpoint in `dcid` for this process (a free user slot unless `slot` or `endpoint` is
   * given). `timeoutMs` bounds the whole bind, the daemon's claim in its cluster directory
   * included; aborting `signal` cancels it. A bind the daemon completes after this call gave up
   * locally is unbound again.
   */
  async bind(dcid: number, opts: ClientBindOptions = {}): Promise<RemoteProcess> {
    const frame: Fields = { id: 0, op: 'bind', dcid };
    if (opts.slot !== undefined) frame.slot = opts.slot;
    if (opts.endpoint !== undefined) frame.endpoint = opts.endpoint;
    if (opts.name !== undefined) frame.name = opts.name;
    const r = await this.request(frame, opts, undefined, this.unbindLate);
    const pieces = this.restoredPieces.get(frame.id as number);
    this.restoredPieces.delete(frame.id as number);
    if (!isPlainMap(r)) throw new DvsError('EDVSBADREQUEST', 'malformed bind result');
    const res = r as unknown as BindResult;
    const last = res.restored;
    if (last !== undefined && !(last instanceof Uint8Array)) throw new DvsError('EDVSBADREQUEST', 'malformed restored state in the bind result');
    const restored = pieces === undefined || last === undefined ? last : Buffer.concat([...pieces, last]);
    const p = new RemoteProcess(this, res, restored, opts.onMoved);
    this.bound.set(procKey(res.dcid, res.endpoint), p);
    return p;
  }

  /** The daemon's success for a bind this client gave up on: nobody holds the endpoint, so it goes. */
  private readonly unbindLate = (result: unknown): void => {
    if (!isPlainMap(result)) return;
    const dcid = asInt(result.dcid);
    const endpoint = asInt(result.endpoint);
    if (dcid !== undefined && endpoint !== undefined) this.call('unbind', { dcid, endpoint }).catch(() => undefined);
  };

  /** Resolves with the endpoint once `endpoint`'s slot is bound at its generation or later. */
  waitForBind(dcid: number, endpoint: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    return this.call('waitForBind', { dcid, target: endpoint }, opts).then((r) => asInt(r) ?? endpoint);
  }

  /** Resolves once `endpoint` is no longer bound. */
  waitForUnbind(dcid: number, endpoint: Endpoint, opts?: CallOptions): Promise<Endpoint> {
    return this.call('waitForUnbind', { dcid, target: endpoint }, opts).then((r) => asInt(r) ?? endpoint);
  }

  /** Wakes `endpoint` out of receive/receiveRequest with EDVSWOKENUP (or flags its next receive(ANY)). */
  wakeup(dcid: number, endpoint: Endpoint): Promise<void> {
    return this.call('wakeup', { dcid, target: endpoint }).then(() => undefined);
  }

  /** The DC's process table as the daemon's kernel sees it. */
  procs(dcid: number): Promise<ProcInfo[]> {
    return this.call('procs', { dcid }) as Promise<ProcInfo[]>;
  }

  nodeInfo(): Promise<NodeInfo> {
    return this.call('info', {}) as Promise<NodeInfo>;
  }

  ping(opts?: CallOptions): Promise<void> {
    return this.call('ping', {}, opts).then(() => undefined);
  }

  /** Has the daemon start a program (docs/protocol.md, "Running programs"); resolves once it runs. */
  run(spec: RunRequest): Promise<RunInfo> {
    return this.call('run', { ...spec }) as Promise<RunInfo>;
  }

  /** The daemon's live runs and its recently ended ones. */
  runs(): Promise<RunInfo[]> {
    return this.call('runs', {}) as Promise<RunInfo[]>;
  }

  /** Signals run `run` (default SIGTERM; SIGKILL after the daemon's grace); resolves once it ended. */
  stop(run: number, signal?: StopSignal): Promise<RunInfo> {
    return this.call('stop', signal === undefined ? { run } : { run, signal }) as Promise<RunInfo>;
  }

  /** Closes the connection; the daemon unbinds every endpoint bound through it. */
  async close(): Promise<void> {
    if (!this.socket.destroyed) {
      this.out.flush();
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 1000);
      t.unref();
      await this.closedPromise;
      clearTimeout(t);
    }
    await this.closedPromise;
  }

  // ---------------------------------------------------------------- internals used by RemoteProcess

  /** @internal */
  notConnected(): DvsError {
    const why = this.closeError ?? this.byeReason;
    return new DvsError('EDVSNOTCONN', why === undefined ? 'not connected to the daemon' : `connection to the daemon lost (${why.message})`, why === undefined ? {} : { details: { cause: why.code } });
  }

  /** @internal */
  reportAsync(err: DvsError): void {
    try {
      this.onAsyncError?.(err);
    } catch {
      // A faulty handler must not break the connection.
    }
  }

  /** @internal */
  forget(p: RemoteProcess): void {
    if (this.bound.get(procKey(p.dcid, p.endpoint)) === p) this.bound.delete(procKey(p.dcid, p.endpoint));
  }

  /**
   * @internal Sends one request and resolves with its result. The frame is written before this
   * returns, so requests reach the daemon in call order. `timeoutMs` travels to the daemon and is
   * guarded locally too; aborting `signal` sends `cancel`.
   */
  call(op: string, fields: Fields, opts?: CallOptions, map?: ResultMap): Promise<unknown> {
    const frame: Fields = { id: 0, op };
    for (const k in fields) {
      const v = fields[k];
      if (v !== undefined) frame[k] = v;
    }
    return this.request(frame, opts, map);
  }

  /**
   * @internal Sends a request frame built by the caller (`op` and fields set, no undefined values;
   * this fills in `id` and `timeoutMs`) and resolves with its result, passed through `map`.
   */
  request(frame: Fields, opts?: CallOptions, map?: ResultMap, late?: LateSuccess): Promise<unknown> {
    if (this.closeError !== undefined) return Promise.reject(this.notConnected());
    let timeoutMs: number | undefined;
    try {
      timeoutMs = checkCallTimeout(opts);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const signal = opts?.signal;
    if (signal?.aborted === true) return Promise.reject(new DvsError('EDVSINTR'));
    const id = this.nextId++;
    frame.id = id;
    if (timeoutMs !== undefined) frame.timeoutMs = timeoutMs;
    let bytes: Buffer | Buffer[];
    try {
      bytes = this.encode(frame);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<unknown>((resolve, reject) => {
      const entry: PendingCall = { id, resolve, reject, map, late, guard: undefined, signal: undefined, onAbort: undefined };
      this.pending.set(entry);
      this.send(bytes);
      // The wiring lives in a method of its own: its closures would otherwise make every call pay
      // for a context they need only with a timeout or a signal.
      if ((timeoutMs !== undefined && timeoutMs >= 0) || signal !== undefined) this.guard(entry, timeoutMs, signal);
    });
  }

  /** The local side of a call's timeout and abort: fails it here if the daemon does not answer in time. */
  private guard(entry: PendingCall, timeoutMs: number | undefined, signal: AbortLike | undefined): void {
    const id = entry.id;
    const failLocally = (err: DvsError): void => {
      if (this.pending.get(id) !== entry) return;
      this.pending.delete(id);
      cleanup(entry);
      this.cancel(id);
      if (entry.late !== undefined) this.lateAnswers.set(id, entry.late);
      entry.reject(err);
    };
    if (timeoutMs !== undefined && timeoutMs >= 0) {
      entry.guard = setTimeout(() => failLocally(new DvsError('EDVSTIMEDOUT', 'the daemon did not answer in time')), timeoutMs + this.settleMs + this.graceMs);
      entry.guard.unref();
    }
    if (signal !== undefined) {
      entry.signal = signal;
      entry.onAbort = () => {
        if (this.pending.get(id) !== entry) return;
        this.cancel(id);
        if (entry.guard !== undefined) clearTimeout(entry.guard);
        entry.guard = setTimeout(() => failLocally(new DvsError('EDVSINTR')), this.settleMs + this.graceMs);
        entry.guard.unref();
      };
      signal.addEventListener('abort', entry.onAbort, ONCE);
    }
  }

  /** Asks the daemon to abort request `target` (it then answers EDVSINTR, or success if it completed first). */
  private cancel(target: number): void {
    if (this.closeError !== undefined) return;
    this.call('cancel', { target }).catch(() => undefined);
  }

  /** Bulk bytes (grant answers, copyTo data) go to the socket from where they lie, uncompressed. */
  private encode(frame: Fields): Buffer | Buffer[] {
    return encodeFrameSegments(frame, this.encoding);
  }

  private write(frame: Fields): void {
    if (this.closeError !== undefined || this.socket.destroyed) return;
    this.send(this.encode(frame));
  }

  /** Writes a frame; the frames of one callback of the event loop leave together. */
  private send(bytes: Buffer | Buffer[]): void {
    this.out.write(bytes);
  }

  /** @internal Runs the hello exchange. */
  async hello(token: string, name: string | undefined, timeoutMs: number, run?: number): Promise<void> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.socket.destroy();
    }, timeoutMs);
    try {
      const r = await this.call('hello', { version: PROC_PROTOCOL_VERSION, token, pid: process.pid, name, lz4: this.compress, ...(run === undefined ? {} : { run }) });
      if (!isPlainMap(r) || asInt(r.version) !== PROC_PROTOCOL_VERSION || asInt(r.maxFrameBytes) === undefined || asInt(r.maxCopyBytes) === undefined) {
        throw new DvsError('EDVSPROTONOSUPPORT', 'the daemon answered hello with an unexpected result');
      }
      this.info = r as unknown as HelloResult;
      this.encoding = { ...this.encoding, maxFrameBytes: this.info.maxFrameBytes };
      const settle = asInt(this.info.settleMs);
      this.settleMs = settle === undefined || settle < 0 ? 0 : Math.min(settle, MAX_SETTLE_MS);
    } catch (err) {
      this.socket.destroy();
      if (timedOut) throw new DvsError('EDVSTIMEDOUT', `the daemon did not accept the connection within ${timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private onData(chunk: Buffer): void {
    let frames: readonly unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.byeReason ??= err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', 'undecodable frame from the daemon');
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      if (!isPlainMap(f)) {
        this.byeReason ??= new DvsError('EDVSBADREQUEST', 'the daemon sent a frame that is not a map');
        this.socket.destroy();
        return;
      }
      if (f.sid !== undefined && typeof f.op === 'string') {
        if (f.op === 'snapshot') this.serveSnapshot(f);
        else this.serveGrant(f);
      } else if (f.op === 'bye') this.byeReason = fromWireError(f.error);
      else if (f.op === 'moved') this.onMoved(f);
      else if (f.op === 'restored') this.onRestoredPiece(f);
      else this.onResponse(f);
    }
  }

  private onResponse(f: Fields): void {
    const id = asInt(f.id);
    if (id === undefined) return;
    const entry = this.pending.get(id);
    if (entry === undefined) {
      // Answered after a local timeout, or a cancel's answer.
      if (this.lateAnswers.size !== 0) this.onLateAnswer(id, f);
      return;
    }
    this.pending.delete(id);
    cleanup(entry);
    if (f.ok !== true) entry.reject(fromWireError(f.error));
    else if (entry.map === undefined) entry.resolve(f.result);
    else {
      try {
        entry.resolve(entry.map(f.result));
      } catch (err) {
        entry.reject(err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', 'malformed result from the daemon'));
      }
    }
  }

  private onLateAnswer(id: number, f: Fields): void {
    const late = this.lateAnswers.get(id);
    if (late === undefined) return;
    this.lateAnswers.delete(id);
    if (f.ok === true) late(f.result);
  }

  /** A grant-read / grant-write from the daemon: served from this process's own buffers. */
  private serveGrant(f: Fields): void {
    const sid = f.sid;
    let answer: Fields;
    try {
      const dcid = asInt(f.dcid);
      const endpoint = asInt(f.endpoint);
      const p = dcid === undefined || endpoint === undefined ? undefined : this.bound.get(procKey(dcid, endpoint));
      if (p === undefined) throw new DvsError('EDVSNOTBIND', `endpoint ${String(f.endpoint)} is not bound in this process`);
      const grant = asInt(f.grant);
      const offset = asInt(f.offset);
      if (grant === undefined || offset === undefined) throw new DvsError('EDVSBADREQUEST', 'grant request without grant or offset');
      if (f.op === 'grant-read') {
        const length = asInt(f.length);
        if (length === undefined) throw new DvsError('EDVSBADREQUEST', 'grant-read without length');
        answer = { sid, ok: true, data: p.readGrant(grant, offset, length) };
      } else if (f.op === 'grant-write') {
        if (!(f.data instanceof Uint8Array)) throw new DvsError('EDVSBADREQUEST', 'grant-write without data');
        p.writeGrant(grant, offset, f.data);
        answer = { sid, ok: true };
      } else {
        throw new DvsError('EDVSBADREQUEST', `unknown server request ${String(f.op)}`);
      }
    } catch (err) {
      answer = { sid, ok: false, error: toWireError(err) };
    }
    try {
      this.write(answer);
    } catch (err) {
      this.write({ sid, ok: false, error: toWireError(err) });
    }
  }

  /** A `snapshot` request: the service's state from its hook, in pieces that each fit a frame. */
  private serveSnapshot(f: Fields): void {
    const sid = f.sid;
    const dcid = asInt(f.dcid);
    const endpoint = asInt(f.endpoint);
    const p = dcid === undefined || endpoint === undefined ? undefined : this.bound.get(procKey(dcid, endpoint));
    if (p === undefined) {
      this.write({ sid, ok: false, error: toWireError(new DvsError('EDVSNOTBIND', `endpoint ${String(f.endpoint)} is not bound in this process`)) });
      return;
    }
    p.snapshot().then(
      (state) => {
        if (state !== undefined && !(state instanceof Uint8Array)) throw new DvsError('EDVSBADVALUE', 'a snapshot hook must give a Uint8Array or undefined');
        if (state !== undefined && state.byteLength > MAX_SNAPSHOT_BYTES) throw new DvsError('EDVSMSGSIZE', `a snapshot may hold at most ${MAX_SNAPSHOT_BYTES} bytes`, { details: { limit: MAX_SNAPSHOT_BYTES } });
        if (state === undefined) {
          this.write({ sid, ok: true });
          return;
        }
        const piece = this.info.maxFrameBytes - FRAME_OVERHEAD_BYTES;
        let at = 0;
        while (state.byteLength - at > piece) {
          this.write({ sid, ok: true, more: true, data: state.subarray(at, at + piece) });
          at += piece;
        }
        this.write({ sid, ok: true, data: state.subarray(at) });
      },
    ).catch((err: unknown) => this.write({ sid, ok: false, error: toWireError(err) }));
  }

  /** The `moved` event: the endpoint lives on at another node; nothing was unbound. */
  private onMoved(f: Fields): void {
    const dcid = asInt(f.dcid);
    const endpoint = asInt(f.endpoint);
    const node = asInt(f.node);
    const epoch = asInt(f.epoch);
    if (dcid === undefined || endpoint === undefined || node === undefined || epoch === undefined) return;
    const p = this.bound.get(procKey(dcid, endpoint));
    if (p === undefined) return;
    this.bound.delete(procKey(dcid, endpoint));
    p.markMoved({ node, epoch });
  }

  /** A piece of a bind's restored state, before the bind's result (request `id`). */
  private onRestoredPiece(f: Fields): void {
    const id = asInt(f.id);
    if (id === undefined || !(f.data instanceof Uint8Array) || this.pending.get(id) === undefined) return;
    let list = this.restoredPieces.get(id);
    if (list === undefined) this.restoredPieces.set(id, (list = []));
    list.push(f.data);
  }

  private onClose(): void {
    if (this.closeError !== undefined) return;
    this.closeError = this.byeReason ?? new DvsError('EDVSCONNRESET', 'connection closed');
    const err = this.notConnected();
    const inFlight = this.pending.values();
    this.pending = new IdTable<PendingCall>();
    for (const entry of inFlight) {
      cleanup(entry);
      entry.reject(err);
    }
    for (const p of this.bound.values()) p.markGone();
    this.bound.clear();
    this.lateAnswers.clear();
    this.restoredPieces.clear();
  }
}

/** Connects to a node daemon's process socket and authenticates. */
export async function connect(opts: ConnectOptions): Promise<DvsClient> {
  const token = opts.token !== undefined ? checkToken(opts.token) : opts.tokenPath !== undefined ? await readTokenFile(opts.tokenPath) : undefined;
  if (token === undefined) throw new DvsError('EDVSBADVALUE', 'connect needs a token or a tokenPath');
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const reads = new SocketReads();
  const socket = createConnection({ path: opts.socketPath, onread: reads.onread });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DvsError('EDVSTIMEDOUT', `cannot connect to ${opts.socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new DvsError('EDVSCONNREFUSED', `cannot connect to ${opts.socketPath}: ${err.message}`, { details: { cause: err.code ?? 'unknown' } }));
    });
  });
  const client = new DvsClient(socket, opts, reads);
  await client.hello(token, opts.name, timeoutMs, opts.run ?? runOfEnv());
  return client;
}
