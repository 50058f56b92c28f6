/**
 * One client connection of the process socket (docs/protocol.md): authentication by `hello`, then
 * requests served against the kernel, several in flight, answered as they complete. Every frame is
 * validated; a frame that breaks the protocol closes the connection; whatever the peer sends, the
 * daemon neither throws nor leaves a promise unobserved. Closing the connection unbinds every
 * endpoint it bound.
 */
import type { Socket } from 'node:net';
import { AbortSwitch, type GrantAccess } from '../ipc/calls.js';
import { ANY, EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import type { Payload } from '../ipc/payload.js';
import { IdTable } from '../kernel/id-table.js';
import type { GrantBackend } from '../kernel/proc.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import { BatchWriter } from '../transport/batch-writer.js';
import { encodeFrameSegments, FrameDecoder, type FramingOptions } from '../transport/framing.js';
import {
  MAX_CLIENT_NAME,
  MAX_TOKEN_LENGTH,
  PROC_PROTOCOL_VERSION,
  asInt,
  fromWireError,
  isPlainMap,
  optBool,
  optInt,
  optString,
  optTimeout,
  reqBytes,
  reqInt,
  reqMap,
  reqString,
  toWireError,
  type BindResult,
  type Fields,
  type HelloResult,
} from '../transport/proc-protocol.js';
import { tokensEqual } from '../transport/proc-token.js';
import { silentLogger, type Logger } from '../runtime/logger.js';

/** Structured logger (pino's call shape). */
export type ProcLogger = Logger;
export { silentLogger };

/** How the daemon binds an endpoint for a client (default: `kernel.bind`). */
export type BindHook = (dcid: number, opts: { slot?: number; endpoint?: number; name?: string }) => Process | Promise<Process>;

/** Limits and shared state every connection of one server uses. */
export interface ConnContext {
  readonly kernel: Kernel;
  readonly token: string;
  readonly logger: ProcLogger;
  readonly defaultDcid: number | undefined;
  readonly maxFrameBytes: number;
  readonly maxCopyBytes: number;
  readonly helloTimeoutMs: number;
  readonly grantTimeoutMs: number;
  readonly maxInFlight: number;
  readonly maxEndpoints: number;
  readonly maxGrants: number;
  readonly maxWriteBufferBytes: number;
  readonly compressMinBytes: number;
  readonly settleMs: number;
  readonly stats: ProcServerStats;
  /** Binds for clients instead of `kernel.bind`, e.g. claiming the endpoint in the directory first. */
  readonly bind: BindHook | undefined;
  closed(conn: ProcConnection): void;
}

export interface ProcServerStats {
  accepted: number;
  refused: number;
  authFailures: number;
  protocolErrors: number;
  requests: number;
  errorResponses: number;
}

interface ServerRequest {
  readonly resolve: (frame: Fields) => void;
  readonly reject: (err: DvsError) => void;
  readonly timer: NodeJS.Timeout;
  readonly deadCode: 'EDVSSRCDIED' | 'EDVSDSTDIED';
}

/** How long a closing connection may take to flush its last frames before it is destroyed. */
const CLOSE_GRACE_MS = 1000;
const DC_MAX = 0xffff;
const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;
const NAME_FIELD_MAX = 256;
/** Bytes a connection may send before its hello is accepted. */
export const MAX_PRE_HELLO_BYTES = 64 * 1024;

type State = 'hello' | 'open' | 'closing' | 'closed';

function key(dcid: number, endpoint: Endpoint): string {
  return `${dcid}:${endpoint}`;
}

function messageResult(m: Message): Fields {
  return m.payload === undefined ? { source: m.source, type: m.type } : { source: m.source, type: m.type, payload: m.payload };
}

/** A request in flight; a cancellable one is the abort switch its blocking call listens to. */
class InFlight extends AbortSwitch {
  constructor(
    readonly id: number,
    readonly cancellable: boolean,
  ) {
    super();
  }
}

/** Requests whose result is a message, sent as `{source, type, payload?}`. */
const MESSAGE_OPS: ReadonlySet<unknown> = new Set(['receive', 'sendrec', 'receiveRequest', 'replyAndReceive']);

export class ProcConnection {
  readonly id: number;
  private readonly ctx: ConnContext;
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private state: State = 'hello';
  private helloTimer: NodeJS.Timeout | undefined;
  private destroyTimer: NodeJS.Timeout | undefined;
  /** How responses are encoded: the frame limit, and compression once hello asked for it. */
  private encoding: FramingOptions;
  private peer: { pid?: number; name?: string } = {};
  /** Endpoints this connection bound, by `dcid:endpoint`. */
  private readonly procs = new Map<string, Process>();
  /** The endpoint the last request acted for (see proc). */
  private lastProc: Process | undefined;
  /** Grant ids registered per endpoint key. */
  private readonly grants = new Map<string, Set<number>>();
  private grantCount = 0;
  private bindsInFlight = 0;
  /** Requests in flight, by id (a ring: no Map churn per request). */
  private pending = new IdTable<InFlight>();
  private readonly serverRequests = new Map<number, ServerRequest>();
  private nextSid = 1;
  private readonly out: BatchWriter;
  private released = false;
  private preHelloBytes = 0;

  constructor(id: number, socket: Socket, ctx: ConnContext) {
    this.id = id;
    this.socket = socket;
    this.out = new BatchWriter(socket);
    this.ctx = ctx;
    this.encoding = { maxFrameBytes: ctx.maxFrameBytes };
    this.decoder = new FrameDecoder({ maxFrameBytes: ctx.maxFrameBytes });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.ctx.logger.debug({ conn: this.id, err: err.message }, 'process socket error'));
    socket.on('close', () => this.dispose());
    this.helloTimer = setTimeout(() => {
      this.helloTimer = undefined;
      this.ctx.stats.authFailures++;
      this.shutdown(new DvsError('EDVSTIMEDOUT', `no hello within ${this.ctx.helloTimeoutMs} ms`));
    }, ctx.helloTimeoutMs);
    this.helloTimer.unref();
  }

  /** Endpoints bound by this connection and still alive. */
  get endpoints(): { dcid: number; endpoint: Endpoint; name: string }[] {
    return [...this.procs.values()].filter((p) => p.bound).map((p) => ({ dcid: p.dcid, endpoint: p.endpoint, name: p.name }));
  }

  get inFlight(): number {
    return this.pending.size;
  }

  // ---------------------------------------------------------------- input

  private onData(chunk: Buffer): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    if (this.state === 'hello') {
      // An unauthenticated peer gets no more than a hello's worth of buffer.
      this.preHelloBytes += chunk.byteLength;
      if (this.preHelloBytes > MAX_PRE_HELLO_BYTES) {
        this.violation(new DvsError('EDVSPACKSIZE', `more than ${MAX_PRE_HELLO_BYTES} bytes before hello was accepted`));
        return;
      }
    }
    let frames: readonly unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.violation(err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', 'undecodable frame'));
      return;
    }
    for (const frame of frames) {
      if (this.isClosing()) return;
      try {
        this.onFrame(frame);
      } catch (err) {
        // A bug, not the peer's fault: log it and drop the connection rather than the daemon.
        this.ctx.logger.error({ conn: this.id, err: err instanceof Error ? err.stack : String(err) }, 'process connection handler failed');
        this.shutdown(new DvsError('EDVSIO', 'internal error'));
      }
    }
  }

  private isClosing(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  private onFrame(frame: unknown): void {
    if (!isPlainMap(frame)) {
      this.violation(new DvsError('EDVSBADREQUEST', 'a frame must hold a msgpack map'));
      return;
    }
    if (frame.sid !== undefined) {
      if (this.state !== 'open') {
        this.violation(new DvsError('EDVSBADREQUEST', 'a response before hello'));
        return;
      }
      this.onServerResponse(frame);
      return;
    }
    const id = asInt(frame.id);
    if (id === undefined || id < 0) {
      this.violation(new DvsError('EDVSBADREQUEST', 'a request needs an integer id >= 0'));
      return;
    }
    if (this.state === 'hello') {
      this.onHello(frame, id);
      return;
    }
    if (this.pending.get(id) !== undefined) {
      this.violation(new DvsError('EDVSBADREQUEST', `request id ${id} is already in flight`));
      return;
    }
    this.ctx.stats.requests++;
    this.onRequest(frame, id);
  }

  private onHello(f: Fields, id: number): void {
    if (f.op !== 'hello') {
      this.ctx.stats.authFailures++;
      this.respondError(id, new DvsError('EDVSPERM', 'the first request must be hello'), true);
      this.shutdown(undefined);
      return;
    }
    let token: string;
    try {
      const version = reqInt(f, 'version');
      token = reqString(f, 'token', MAX_TOKEN_LENGTH);
      const pid = optInt(f, 'pid', 0);
      const name = optString(f, 'name', MAX_CLIENT_NAME);
      if (optBool(f, 'lz4') === true) this.encoding = { maxFrameBytes: this.ctx.maxFrameBytes, compressMinBytes: this.ctx.compressMinBytes };
      this.peer = { ...(pid === undefined ? {} : { pid }), ...(name === undefined ? {} : { name }) };
      if (version !== PROC_PROTOCOL_VERSION) throw new DvsError('EDVSPROTONOSUPPORT', `protocol version ${version} is not supported; this daemon speaks ${PROC_PROTOCOL_VERSION}`, { details: { version: PROC_PROTOCOL_VERSION } });
    } catch (err) {
      this.ctx.stats.authFailures++;
      this.respondError(id, err, true);
      this.shutdown(undefined);
      return;
    }
    if (!tokensEqual(this.ctx.token, token)) {
      this.ctx.stats.authFailures++;
      this.ctx.logger.warn({ conn: this.id, ...this.peer }, 'process connection refused: wrong token');
      this.respondError(id, new DvsError('EDVSACCES', 'wrong token'), true);
      this.shutdown(undefined);
      return;
    }
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.state = 'open';
    // Authenticated: a large frame may now be given its whole buffer once its header is in.
    this.decoder.assembleLargeFrames = true;
    const k = this.ctx.kernel;
    const result: HelloResult = {
      version: PROC_PROTOCOL_VERSION,
      nodeId: k.nodeId,
      connection: this.id,
      maxFrameBytes: this.ctx.maxFrameBytes,
      maxPayloadBytes: k.limits.maxPayloadBytes,
      maxCopyChunk: k.limits.maxCopyChunk,
      maxCopyBytes: this.ctx.maxCopyBytes,
      maxInFlight: this.ctx.maxInFlight,
      maxEndpoints: this.ctx.maxEndpoints,
      maxGrants: this.ctx.maxGrants,
      settleMs: this.ctx.settleMs,
      ...(this.ctx.defaultDcid === undefined ? {} : { defaultDcid: this.ctx.defaultDcid }),
    };
    this.ctx.logger.debug({ conn: this.id, ...this.peer }, 'process connected');
    this.respondOk(id, result);
  }

  // ---------------------------------------------------------------- requests

  private onRequest(f: Fields, id: number): void {
    if (this.pending.size >= this.ctx.maxInFlight) {
      this.respondError(id, new DvsError('EDVSAGAIN', `more than ${this.ctx.maxInFlight} requests in flight`));
      return;
    }
    let outcome: unknown;
    try {
      outcome = this.dispatch(f, id);
    } catch (err) {
      this.pending.delete(id);
      this.respondError(id, err);
      return;
    }
    if (outcome instanceof Promise) {
      // One reaction per request: the message shape is applied here rather than by a .then of its own.
      const asMessage = MESSAGE_OPS.has(f.op);
      outcome.then(
        (result: unknown) => {
          this.pending.delete(id);
          this.respondOk(id, asMessage ? messageResult(result as Message) : result);
        },
        (err: unknown) => {
          this.pending.delete(id);
          this.respondError(id, err);
        },
      );
    } else {
      this.respondOk(id, outcome);
    }
  }

  /** Registers a blocking call as in flight (cancellable) and returns the options that carry its abort signal. */
  private blocking(id: number, f: Fields): { timeoutMs?: number; signal: AbortSwitch } {
    const timeoutMs = optTimeout(f);
    const ac = new InFlight(id, true);
    this.pending.set(ac);
    return timeoutMs === undefined ? { signal: ac } : { timeoutMs, signal: ac };
  }

  /** Non-blocking calls still in flight (grant backends may answer later): tracked but not cancellable. */
  private tracked<T>(id: number, p: Promise<T>): Promise<T> {
    this.pending.set(new InFlight(id, false));
    return p;
  }

  private dispatch(f: Fields, id: number): unknown {
    const op = f.op;
    const k = this.ctx.kernel;
    switch (op) {
      case 'ping':
        return null;
      case 'info':
        return { ...k.info(), dcs: k.listDcs(), connection: this.id, endpoints: this.endpoints };
      case 'procs':
        return k.procs(this.dcid(f));
      case 'bind':
        return this.bind(f, id);
      case 'unbind': {
        const p = this.proc(f);
        this.forget(p);
        return this.tracked(id, p.unbind());
      }
      case 'send': {
        const p = this.proc(f);
        const dst = reqInt(f, 'dst');
        const msg = this.message(f);
        return p.send(dst, msg, this.blocking(id, f));
      }
      case 'receive': {
        const p = this.proc(f);
        const src = reqInt(f, 'src');
        return p.receive(src, this.blocking(id, f));
      }
      case 'sendrec': {
        const p = this.proc(f);
        const dst = reqInt(f, 'dst');
        const msg = this.message(f);
        return p.sendrec(dst, msg, this.blocking(id, f));
      }
      case 'receiveRequest': {
        const p = this.proc(f);
        return p.receiveRequest(this.blocking(id, f));
      }
      case 'reply': {
        const p = this.proc(f);
        const dst = reqInt(f, 'dst');
        return this.tracked(id, p.reply(dst, this.message(f)));
      }
      case 'replyAndReceive': {
        const p = this.proc(f);
        const dst = reqInt(f, 'dst');
        return p.replyAndReceive(dst, this.message(f), this.blocking(id, f));
      }
      case 'notify': {
        const p = this.proc(f);
        const dst = reqInt(f, 'dst');
        const arg = optInt(f, 'arg', 0, 0xffffffff);
        return this.tracked(id, p.notify(dst, arg === undefined ? {} : { arg }));
      }
      case 'grant':
        return this.grant(f);
      case 'revoke': {
        const p = this.proc(f);
        const grant = reqInt(f, 'grant', 1);
        p.revoke(grant);
        this.dropGrant(key(p.dcid, p.endpoint), grant);
        return null;
      }
      case 'copyFrom': {
        const p = this.proc(f);
        const owner = reqInt(f, 'owner');
        const grant = reqInt(f, 'grant', 0);
        const offset = optInt(f, 'offset', 0) ?? 0;
        const length = reqInt(f, 'length', 0);
        if (length > this.ctx.maxCopyBytes) throw new DvsError('EDVSMSGSIZE', `copyFrom of ${length} bytes exceeds the per-request limit of ${this.ctx.maxCopyBytes}`, { details: { limit: this.ctx.maxCopyBytes } });
        const into = new Uint8Array(length);
        return p.copyFrom({ owner, grant, offset }, into, this.blocking(id, f)).then((n) => into.subarray(0, n));
      }
      case 'copyTo': {
        const p = this.proc(f);
        const owner = reqInt(f, 'owner');
        const grant = reqInt(f, 'grant', 0);
        const offset = optInt(f, 'offset', 0) ?? 0;
        const data = reqBytes(f, 'data', this.ctx.maxCopyBytes);
        return p.copyTo({ owner, grant, offset }, data, this.blocking(id, f));
      }
      case 'copy': {
        const p = this.proc(f);
        const src = this.grantRef(f, 'src');
        const dst = this.grantRef(f, 'dst');
        const length = reqInt(f, 'length', 0);
        return p.copy(src, dst, length, this.blocking(id, f));
      }
      case 'waitForBind': {
        const dcid = this.dcid(f);
        const target = reqInt(f, 'target');
        return k.waitForBind(dcid, target, this.blocking(id, f));
      }
      case 'waitForUnbind': {
        const dcid = this.dcid(f);
        const target = reqInt(f, 'target');
        return k.waitForUnbind(dcid, target, this.blocking(id, f));
      }
      case 'wakeup':
        k.wakeup(this.dcid(f), reqInt(f, 'target'));
        return null;
      case 'cancel': {
        const target = reqInt(f, 'target', 0);
        const ac = this.pending.get(target);
        if (ac === undefined || !ac.cancellable) return false;
        ac.abort();
        return true;
      }
      case 'hello':
        throw new DvsError('EDVSALREADY', 'hello was already accepted on this connection');
      default:
        throw new DvsError('EDVSBADREQUEST', `unknown op ${typeof op === 'string' ? JSON.stringify(op.slice(0, 40)) : String(op)}`);
    }
  }

  private dcid(f: Fields): number {
    const dcid = optInt(f, 'dcid', 0, DC_MAX) ?? this.ctx.defaultDcid;
    if (dcid === undefined) throw new DvsError('EDVSBADDCID', 'no dcid given and the daemon has no default DC');
    return dcid;
  }

  /** The calling process: an endpoint this connection bound and that is still bound. */
  private proc(f: Fields): Process {
    const dcid = this.dcid(f);
    const endpoint = reqInt(f, 'endpoint');
    // Most connections act for one endpoint: the last one found needs no key string.
    const last = this.lastProc;
    if (last !== undefined && last.endpoint === endpoint && last.dcid === dcid && last.bound) return last;
    const k = key(dcid, endpoint);
    const p = this.procs.get(k);
    if (p === undefined || !p.bound) {
      if (p !== undefined) this.forget(p);
      throw new DvsError('EDVSNOTBIND', `endpoint ${endpoint} of DC ${dcid} is not bound by this connection`, { details: { endpoint } });
    }
    this.lastProc = p;
    return p;
  }

  /** The message of a send, sendrec or reply: only `type` and `payload`; the kernel stamps `source`. */
  private message(f: Fields): OutgoingMessage {
    return { type: reqInt(f, 'type', I32_MIN, I32_MAX), payload: f.payload as Payload };
  }

  private grantRef(f: Fields, name: string): { owner: Endpoint; grant: number; offset: number } {
    const r = reqMap(f, name);
    return { owner: reqInt(r, 'owner'), grant: reqInt(r, 'grant', 0), offset: optInt(r, 'offset', 0) ?? 0 };
  }

  private bind(f: Fields, id: number): BindResult | Promise<BindResult> {
    const dcid = this.dcid(f);
    const slot = optInt(f, 'slot');
    const endpoint = optInt(f, 'endpoint');
    const name = optString(f, 'name', NAME_FIELD_MAX);
    for (const p of this.procs.values()) if (!p.bound) this.forget(p);
    if (this.procs.size + this.bindsInFlight >= this.ctx.maxEndpoints) throw new DvsError('EDVSNOSPC', `a connection may bind at most ${this.ctx.maxEndpoints} endpoints`, { details: { limit: this.ctx.maxEndpoints } });
    const opts = { ...(slot === undefined ? {} : { slot }), ...(endpoint === undefined ? {} : { endpoint }), ...(name === undefined ? {} : { name }) };
    const hook = this.ctx.bind;
    if (hook === undefined) return this.adopt(dcid, this.ctx.kernel.bind(dcid, opts));
    const bound = hook(dcid, opts);
    if (!(bound instanceof Promise)) return this.adopt(dcid, bound);
    this.bindsInFlight++;
    return this.tracked(id, bound).then(
      (p) => {
        this.bindsInFlight--;
        return this.adopt(dcid, p);
      },
      (err: unknown) => {
        this.bindsInFlight--;
        throw err;
      },
    );
  }

  /** Takes charge of a freshly bound process; one bound after the connection closed is unbound at once. */
  private adopt(dcid: number, p: Process): BindResult {
    const k = this.ctx.kernel;
    if (this.released) {
      try {
        if (p.bound) k.unbind(p.dcid, p.endpoint);
      } catch {
        // Already gone.
      }
      throw new DvsError('EDVSSHUTDOWN', 'the connection closed while binding');
    }
    this.procs.set(key(dcid, p.endpoint), p);
    const space = new EndpointSpace(k.dcInfo(dcid).limits);
    const s = space.slotOf(p.endpoint);
    this.ctx.logger.debug({ conn: this.id, dcid, endpoint: p.endpoint, name: p.name }, 'process bound');
    return { dcid, endpoint: p.endpoint, slot: s, generation: space.generationOf(p.endpoint), name: p.name, system: space.isSystemSlot(s) };
  }

  private grant(f: Fields): number {
    const p = this.proc(f);
    const grant = reqInt(f, 'grant', 1);
    const length = reqInt(f, 'length', 0);
    const access = reqString(f, 'access', 16) as GrantAccess;
    const grantee = optInt(f, 'grantee') ?? ANY;
    const whileWaiting = optBool(f, 'whileWaiting') ?? true;
    if (this.grantCount >= this.ctx.maxGrants) throw new DvsError('EDVSNOSPC', `a connection may hold at most ${this.ctx.maxGrants} grants`, { details: { limit: this.ctx.maxGrants } });
    const k = key(p.dcid, p.endpoint);
    const id = this.ctx.kernel.grantExternal(p.dcid, p.endpoint, this.backend(p.dcid, p.endpoint, grant), length, { grantee, access, whileWaiting }, grant);
    let set = this.grants.get(k);
    if (set === undefined) this.grants.set(k, (set = new Set()));
    set.add(id);
    this.grantCount++;
    return id;
  }

  private dropGrant(k: string, grant: number): void {
    const set = this.grants.get(k);
    if (set?.delete(grant) === true) this.grantCount--;
  }

  /** Stops tracking an endpoint (unbound here or by the kernel); its grants vanish with it. */
  private forget(p: Process): void {
    if (this.lastProc === p) this.lastProc = undefined;
    const k = key(p.dcid, p.endpoint);
    this.procs.delete(k);
    const set = this.grants.get(k);
    if (set !== undefined) {
      this.grantCount -= set.size;
      this.grants.delete(k);
    }
  }

  // ---------------------------------------------------------------- grants served by the client

  /** The bytes of a client's grant live in the client: each copy step asks it for them. */
  private backend(dcid: number, endpoint: Endpoint, grant: number): GrantBackend {
    return {
      read: (offset, length) =>
        this.serverRequest({ op: 'grant-read', dcid, endpoint, grant, offset, length }, 'EDVSSRCDIED').then((r) => {
          const data = r.data;
          if (!(data instanceof Uint8Array) || data.byteLength !== length) {
            throw new DvsError('EDVSPACKSIZE', `the grant owner answered ${data instanceof Uint8Array ? data.byteLength : 0} bytes where ${length} were asked`, { details: { grant } });
          }
          return data;
        }),
      write: (offset, data) => this.serverRequest({ op: 'grant-write', dcid, endpoint, grant, offset, data }, 'EDVSDSTDIED').then(() => undefined),
    };
  }

  private serverRequest(body: Fields, deadCode: 'EDVSSRCDIED' | 'EDVSDSTDIED'): Promise<Fields> {
    if (this.state !== 'open') return Promise.reject(new DvsError(deadCode, 'the grant owner disconnected'));
    const sid = this.nextSid++;
    return new Promise<Fields>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.serverRequests.delete(sid)) reject(new DvsError('EDVSTIMEDOUT', `the grant owner did not answer within ${this.ctx.grantTimeoutMs} ms`));
      }, this.ctx.grantTimeoutMs);
      timer.unref();
      this.serverRequests.set(sid, { resolve, reject, timer, deadCode });
      this.write({ sid, ...body });
    });
  }

  private onServerResponse(f: Fields): void {
    const sid = asInt(f.sid);
    if (sid === undefined) {
      this.violation(new DvsError('EDVSBADREQUEST', 'sid must be an integer'));
      return;
    }
    const req = this.serverRequests.get(sid);
    if (req === undefined) return; // late answer after a timeout
    this.serverRequests.delete(sid);
    clearTimeout(req.timer);
    if (f.ok === true) req.resolve(f);
    else req.reject(f.ok === false ? fromWireError(f.error) : new DvsError('EDVSBADREQUEST', 'a response needs ok: true or false'));
  }

  // ---------------------------------------------------------------- output

  private respondOk(id: number, result: unknown): void {
    this.write({ id, ok: true, result: result === undefined ? null : result });
  }

  private respondError(id: number, err: unknown, evenIfClosing = false): void {
    if (!(err instanceof DvsError)) this.ctx.logger.error({ conn: this.id, err: err instanceof Error ? err.stack : String(err) }, 'unexpected error serving a request');
    this.ctx.stats.errorResponses++;
    this.write({ id, ok: false, error: toWireError(err) }, evenIfClosing);
  }

  private write(frame: Fields, evenIfClosing = false): void {
    if (this.state === 'closed' || (this.state === 'closing' && !evenIfClosing) || this.socket.destroyed) return;
    let bytes: Buffer | Buffer[];
    try {
      // Bulk bytes (copy data, grant writes) go to the socket from where they lie, uncompressed.
      bytes = encodeFrameSegments(frame, this.encoding);
    } catch (err) {
      if (frame.id !== undefined && frame.ok === true) {
        this.respondError(frame.id as number, err);
      } else if (frame.sid !== undefined) {
        const req = this.serverRequests.get(frame.sid as number);
        if (req !== undefined) {
          this.serverRequests.delete(frame.sid as number);
          clearTimeout(req.timer);
          req.reject(err instanceof DvsError ? err : new DvsError('EDVSBADVALUE'));
        }
      } else {
        this.ctx.logger.error({ conn: this.id, err: (err as Error).message }, 'cannot encode a response');
      }
      return;
    }
    // The responses of one callback of the event loop leave together.
    this.out.write(bytes);
    if (this.socket.writableLength + this.out.pendingBytes > this.ctx.maxWriteBufferBytes) {
      this.ctx.logger.warn({ conn: this.id, buffered: this.socket.writableLength }, 'process client does not read its responses; dropping it');
      this.socket.destroy();
    }
  }

  // ---------------------------------------------------------------- closing

  /** The peer broke the protocol: tell it why (best effort) and close. */
  private violation(err: DvsError): void {
    this.ctx.stats.protocolErrors++;
    this.ctx.logger.warn({ conn: this.id, code: err.code, reason: err.message }, 'process connection closed: protocol violation');
    this.shutdown(err);
  }

  /** Closes the connection, optionally telling the peer why with a `bye` frame. */
  shutdown(reason: DvsError | undefined): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    if (reason !== undefined) this.write({ op: 'bye', error: toWireError(reason) });
    this.state = 'closing';
    this.release();
    this.out.flush();
    this.socket.end();
    this.destroyTimer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    this.destroyTimer.unref();
  }

  /** The socket is gone. */
  private dispose(): void {
    this.release();
    this.state = 'closed';
    if (this.destroyTimer !== undefined) clearTimeout(this.destroyTimer);
    this.destroyTimer = undefined;
    this.ctx.closed(this);
  }


  /** Unbinds every endpoint of the connection (the kernel cascades the errors) and ends its calls. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    for (const req of this.serverRequests.values()) {
      clearTimeout(req.timer);
      req.reject(new DvsError(req.deadCode, 'the grant owner disconnected'));
    }
    this.serverRequests.clear();
    for (const p of [...this.procs.values()]) {
      this.forget(p);
      if (!p.bound) continue;
      try {
        this.ctx.kernel.unbind(p.dcid, p.endpoint);
      } catch (err) {
        this.ctx.logger.debug({ conn: this.id, endpoint: p.endpoint, err: (err as Error).message }, 'unbind on disconnect failed');
      }
    }
    const inFlight = this.pending.values();
    this.pending = new IdTable<InFlight>();
    for (const ac of inFlight) if (ac.cancellable) ac.abort();
    if (this.state === 'open') this.ctx.logger.debug({ conn: this.id, ...this.peer }, 'process disconnected');
  }
}
