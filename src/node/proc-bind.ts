/**
 * The `bind` request: a new endpoint for the connection, bound by the daemon's bind hook (which may
 * claim it in the cluster directory first, asynchronously) or by the kernel itself. A hook's bind
 * is a blocking call like any other: bounded by `timeoutMs`, aborted by `cancel` or by the
 * connection closing. An endpoint whose bind completes after its call ended (expired, cancelled,
 * the connection closed) is unbound at once: nothing is left bound that no client knows of.
 * A hook may give the state of a moved service with the Process: it goes to the client as
 * `restored` (pieces above one frame as `restored` events before the result) with `migrated`.
 */
import type { AbortSwitch } from '../ipc/calls.js';
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import { Process } from '../kernel/process.js';
import { MAX_SNAPSHOT_BYTES, optInt, optString, optTimeout, type BindResult, type Fields } from '../transport/proc-protocol.js';
import type { BoundForClient } from './proc-context.js';
import { dcidOf, type OpHost } from './proc-op-host.js';

const NAME_FIELD_MAX = 256;

/** What a bind asks for: a slot (its next generation), an exact endpoint, or neither (the lowest free user slot). */
interface BindRequest {
  slot?: number;
  endpoint?: Endpoint;
  name?: string;
}

export function bindForClient(c: OpHost, f: Fields, id: number): BindResult | Promise<BindResult> {
  const dcid = dcidOf(c, f);
  const slot = optInt(f, 'slot');
  const endpoint = optInt(f, 'endpoint');
  const name = optString(f, 'name', NAME_FIELD_MAX);
  const timeoutMs = optTimeout(f);
  c.bound.checkRoom();
  const req: BindRequest = {};
  if (slot !== undefined) req.slot = slot;
  if (endpoint !== undefined) {
    checkExactEndpoint(c, dcid, endpoint, slot);
    req.endpoint = endpoint;
  }
  if (name !== undefined) req.name = name;
  const hook = c.ctx.bind;
  if (hook === undefined) return adopt(c, dcid, id, { process: c.ctx.kernel.bind(dcid, req) });
  const call = c.blocking(id, f);
  const run = c.run === undefined ? {} : { run: c.run };
  const bound = hook(dcid, timeoutMs === undefined || timeoutMs < 0 ? { ...req, ...run, signal: call.signal } : { ...req, ...run, timeoutMs, signal: call.signal });
  if (!(bound instanceof Promise)) return adopt(c, dcid, id, asBound(bound));
  return awaitHook(c, dcid, id, bound, call.signal, timeoutMs);
}

/** A hook's result in one shape. */
function asBound(r: Process | BoundForClient): BoundForClient {
  return r instanceof Process ? { process: r } : r;
}

/**
 * An exact endpoint must be a process endpoint of the DC, in `slot` when both are given: checked
 * here as the kernel checks it, so a hook is only ever asked for a well-formed one.
 */
function checkExactEndpoint(c: OpHost, dcid: number, endpoint: Endpoint, slot: number | undefined): void {
  const space = new EndpointSpace(c.ctx.kernel.dcInfo(dcid).limits);
  const itsSlot = space.checkEndpoint(endpoint);
  if (slot !== undefined && slot !== itsSlot) throw new DvsError('EDVSBADVALUE', `endpoint ${endpoint} is not in slot ${slot}`, { details: { endpoint, slot } });
}

/** The hook's bind as a call: its result, or its timeout, its abort, whichever comes first. */
function awaitHook(c: OpHost, dcid: number, id: number, bound: Promise<Process | BoundForClient>, signal: AbortSwitch, timeoutMs: number | undefined): Promise<BindResult> {
  c.bound.bindsInFlight++;
  return new Promise<BindResult>((resolve, reject) => {
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const answer = (): boolean => {
      if (answered) return false;
      answered = true;
      c.bound.bindsInFlight--;
      if (timer !== undefined) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      return true;
    };
    const onAbort = (): void => {
      if (answer()) reject(new DvsError('EDVSINTR', 'bind aborted'));
    };
    signal.addEventListener('abort', onAbort);
    if (timeoutMs !== undefined && timeoutMs >= 0) {
      timer = setTimeout(() => {
        if (!answer()) return;
        reject(new DvsError('EDVSTIMEDOUT', `bind did not complete within ${timeoutMs} ms`));
        // Tells the hook to give up.
        signal.abort();
      }, timeoutMs);
      timer.unref();
    }
    bound.then(
      (r) => {
        const b = asBound(r);
        if (!answer()) {
          undo(c, b.process, 'bind completed after its call ended; unbound');
          return;
        }
        try {
          resolve(adopt(c, dcid, id, b));
        } catch (err) {
          reject(err as Error);
        }
      },
      (err: unknown) => {
        if (answer()) reject(err as Error);
      },
    );
  });
}

/**
 * Takes charge of a freshly bound process; one bound after the connection closed is unbound at
 * once, and so is one whose restored state is not bytes within MAX_SNAPSHOT_BYTES (a daemon bug,
 * refused rather than sent half).
 */
function adopt(c: OpHost, dcid: number, id: number, b: BoundForClient): BindResult {
  const p = b.process;
  if (c.released) {
    undo(c, p, 'bind completed after the connection closed; unbound');
    throw new DvsError('EDVSSHUTDOWN', 'the connection closed while binding');
  }
  const restored = b.restored;
  if (restored !== undefined && (!(restored instanceof Uint8Array) || restored.byteLength > MAX_SNAPSHOT_BYTES)) {
    undo(c, p, 'bind hook gave a restored state that is not bytes within the limit; unbound');
    throw new DvsError('EDVSMSGSIZE', `a restored state must be bytes, at most ${MAX_SNAPSHOT_BYTES}`, { details: { limit: MAX_SNAPSHOT_BYTES } });
  }
  c.bound.add(p);
  const space = new EndpointSpace(c.ctx.kernel.dcInfo(dcid).limits);
  const s = space.slotOf(p.endpoint);
  c.ctx.logger.debug({ conn: c.id, dcid, endpoint: p.endpoint, name: p.name, migrated: b.migrated === true }, 'process bound');
  const result: { -readonly [K in keyof BindResult]: BindResult[K] } = { dcid, endpoint: p.endpoint, slot: s, generation: space.generationOf(p.endpoint), name: p.name, system: space.isSystemSlot(s) };
  if (restored !== undefined) result.restored = lastPieceAfterEvents(c, id, restored);
  if (b.migrated === true) result.migrated = true;
  return result;
}

/**
 * A state larger than one frame holds: every piece but the last goes now as a `restored` event
 * carrying the bind's id (written before the result, so the client has them all when it arrives);
 * the last piece is the result's `restored`.
 */
function lastPieceAfterEvents(c: OpHost, id: number, restored: Uint8Array): Uint8Array {
  const piece = c.ctx.maxCopyBytes;
  let at = 0;
  while (restored.byteLength - at > piece) {
    c.event({ op: 'restored', id, data: restored.subarray(at, at + piece) });
    at += piece;
  }
  return restored.subarray(at);
}

/** Unbinds a process no client holds. */
function undo(c: OpHost, p: Process, why: string): void {
  try {
    if (p.bound) c.ctx.kernel.unbind(p.dcid, p.endpoint);
  } catch {
    // Already gone.
  }
  c.ctx.logger.debug({ conn: c.id, dcid: p.dcid, endpoint: p.endpoint }, why);
}
