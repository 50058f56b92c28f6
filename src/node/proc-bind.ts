/**
 * The `bind` request: a new endpoint for the connection, bound by the daemon's bind hook (which may
 * claim it in the cluster directory first, asynchronously) or by the kernel itself. A hook's bind
 * is a blocking call like any other: bounded by `timeoutMs`, aborted by `cancel` or by the
 * connection closing. An endpoint whose bind completes after its call ended (expired, cancelled,
 * the connection closed) is unbound at once: nothing is left bound that no client knows of.
 */
import type { AbortSwitch } from '../ipc/calls.js';
import { EndpointSpace, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { Process } from '../kernel/process.js';
import { optInt, optString, optTimeout, type BindResult, type Fields } from '../transport/proc-protocol.js';
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
  if (hook === undefined) return adopt(c, dcid, c.ctx.kernel.bind(dcid, req));
  const call = c.blocking(id, f);
  const bound = hook(dcid, timeoutMs === undefined || timeoutMs < 0 ? { ...req, signal: call.signal } : { ...req, timeoutMs, signal: call.signal });
  if (!(bound instanceof Promise)) return adopt(c, dcid, bound);
  return awaitHook(c, dcid, bound, call.signal, timeoutMs);
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
function awaitHook(c: OpHost, dcid: number, bound: Promise<Process>, signal: AbortSwitch, timeoutMs: number | undefined): Promise<BindResult> {
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
      (p) => {
        if (!answer()) {
          undo(c, p, 'bind completed after its call ended; unbound');
          return;
        }
        try {
          resolve(adopt(c, dcid, p));
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

/** Takes charge of a freshly bound process; one bound after the connection closed is unbound at once. */
function adopt(c: OpHost, dcid: number, p: Process): BindResult {
  if (c.released) {
    undo(c, p, 'bind completed after the connection closed; unbound');
    throw new DvsError('EDVSSHUTDOWN', 'the connection closed while binding');
  }
  c.bound.add(p);
  const space = new EndpointSpace(c.ctx.kernel.dcInfo(dcid).limits);
  const s = space.slotOf(p.endpoint);
  c.ctx.logger.debug({ conn: c.id, dcid, endpoint: p.endpoint, name: p.name }, 'process bound');
  return { dcid, endpoint: p.endpoint, slot: s, generation: space.generationOf(p.endpoint), name: p.name, system: space.isSystemSlot(s) };
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
