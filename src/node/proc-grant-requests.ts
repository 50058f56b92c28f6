/**
 * The daemon's requests to a client, answered with the same `sid`. The bytes of a client's grants
 * live in the client (docs/protocol.md §7): the kernel copies through a GrantBackend whose every
 * step is a request (`grant-read`, `grant-write`). A service's state for a move is a `snapshot`
 * request, answered in one or more pieces (docs/protocol.md, Migration).
 */
import type { Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { GrantBackend } from '../kernel/proc.js';
import { asInt, fromWireError, type Fields } from '../transport/proc-protocol.js';
import { SnapshotPieces } from './proc-snapshot.js';

/** Which error a copy gets when the grant owner is gone: reading from it, or writing into it. */
type DeadCode = 'EDVSSRCDIED' | 'EDVSDSTDIED';

interface ServerRequest {
  readonly resolve: (frame: Fields) => void;
  readonly reject: (err: DvsError) => void;
  readonly timer: NodeJS.Timeout;
  readonly deadCode: DeadCode;
  /** Takes an answer `{ok: true, more: true}` of a request answered in pieces; absent: every answer is the last. */
  readonly piece: ((f: Fields) => void) | undefined;
}

export class GrantRequests {
  private readonly waiting = new Map<number, ServerRequest>();
  private nextSid = 1;
  /** False once the connection is closing: new requests fail at once. */
  private open = true;

  constructor(
    /** Sends a grant request frame to the client. */
    private readonly send: (frame: Fields) => void,
    private readonly timeoutMs: number,
  ) {}

  /** The backend of grant `grant` of the client's endpoint: every copy step asks the client. */
  backend(dcid: number, endpoint: Endpoint, grant: number): GrantBackend {
    return {
      read: (offset, length) =>
        this.request({ op: 'grant-read', dcid, endpoint, grant, offset, length }, 'EDVSSRCDIED').then((r) => {
          const data = r.data;
          if (!(data instanceof Uint8Array) || data.byteLength !== length) {
            throw new DvsError('EDVSPACKSIZE', `the grant owner answered ${data instanceof Uint8Array ? data.byteLength : 0} bytes where ${length} were asked`, { details: { grant } });
          }
          return data;
        }),
      write: (offset, data) => this.request({ op: 'grant-write', dcid, endpoint, grant, offset, data }, 'EDVSDSTDIED').then(() => undefined),
    };
  }

  /**
   * A grant answer from the client. False when it breaks the protocol (a `sid` that is not an
   * integer); an answer nobody waits for (late, after a timeout) is ignored.
   */
  answer(f: Fields): boolean {
    const sid = asInt(f.sid);
    if (sid === undefined) return false;
    const req = this.waiting.get(sid);
    if (req === undefined) return true;
    if (f.ok === true && f.more === true && req.piece !== undefined) {
      try {
        req.piece(f);
        return true;
      } catch (err) {
        // A bad piece fails the request; the pieces after it find no request and are ignored.
        this.waiting.delete(sid);
        clearTimeout(req.timer);
        req.reject(err as DvsError);
        return true;
      }
    }
    this.waiting.delete(sid);
    clearTimeout(req.timer);
    if (f.ok === true) req.resolve(f);
    else req.reject(f.ok === false ? fromWireError(f.error) : new DvsError('EDVSBADREQUEST', 'a response needs ok: true or false'));
    return true;
  }

  /** Request `sid` could not be sent (its frame could not be encoded). */
  fail(sid: number, err: DvsError): void {
    const req = this.waiting.get(sid);
    if (req === undefined) return;
    this.waiting.delete(sid);
    clearTimeout(req.timer);
    req.reject(err);
  }

  /**
   * The state of the service at `endpoint` for a move: its client's snapshot answers concatenated,
   * undefined when it gave none. Rejects with the client's refusal, EDVSTIMEDOUT when the answers
   * are not all in within `timeoutMs`, EDVSSRCDIED when the client disconnects.
   */
  snapshot(dcid: number, endpoint: Endpoint, timeoutMs: number): Promise<Uint8Array | undefined> {
    const pieces = new SnapshotPieces();
    return this.request({ op: 'snapshot', dcid, endpoint }, 'EDVSSRCDIED', timeoutMs, (f) => pieces.add(f)).then((last) => {
      pieces.add(last);
      return pieces.whole();
    });
  }

  /** The client is gone: every copy waiting on it fails, and so does every later one. */
  close(): void {
    this.open = false;
    for (const req of this.waiting.values()) {
      clearTimeout(req.timer);
      req.reject(new DvsError(req.deadCode, 'the client disconnected'));
    }
    this.waiting.clear();
  }

  private request(body: Fields, deadCode: DeadCode, timeoutMs = this.timeoutMs, piece?: (f: Fields) => void): Promise<Fields> {
    if (!this.open) return Promise.reject(new DvsError(deadCode, 'the client disconnected'));
    const sid = this.nextSid++;
    return new Promise<Fields>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiting.delete(sid)) reject(new DvsError('EDVSTIMEDOUT', `the client did not answer ${String(body.op)} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.waiting.set(sid, { resolve, reject, timer, deadCode, piece });
      this.send({ sid, ...body });
    });
  }
}
