/**
 * The requests of the process protocol (docs/protocol.md §5), one handler per `op`, each reading its
 * fields strictly and calling the kernel for the connection's endpoint. A handler returns its result,
 * or a promise of it; a thrown DvsError is the request's error response.
 */
import type { GrantAccess } from '../ipc/calls.js';
import { ANY, type Endpoint } from '../ipc/endpoint.js';
import { DvsError } from '../ipc/errors.js';
import type { OutgoingMessage } from '../ipc/message.js';
import type { Payload } from '../ipc/payload.js';
import type { Process } from '../kernel/process.js';
import { optBool, optInt, reqBytes, reqInt, reqMap, reqString, type Fields } from '../transport/proc-protocol.js';
import { bindForClient } from './proc-bind.js';
import { dcidOf, type OpHost } from './proc-op-host.js';
import { listRuns, runProgram, stopRun } from './proc-runs.js';

export interface Op {
  readonly run: (c: OpHost, f: Fields, id: number) => unknown;
  /** The result is a message, sent as `{source, type, payload?}`. */
  readonly message: boolean;
  /**
   * A control request (cancel, ping, unbind, info) is served even at the in-flight limit: a client
   * at the limit must still be able to abort its calls, end an endpoint and look at the daemon.
   */
  readonly control: boolean;
}

const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;

/** The calling process: `endpoint`, bound by this connection and still bound. */
function callerOf(c: OpHost, f: Fields): Process {
  const dcid = dcidOf(c, f);
  return c.bound.find(dcid, reqInt(f, 'endpoint'));
}

/** The message of a send, sendrec or reply: only `type` and `payload`; the kernel stamps `source`. */
function messageOf(f: Fields): OutgoingMessage {
  return { type: reqInt(f, 'type', I32_MIN, I32_MAX), payload: f.payload as Payload };
}

function grantRefOf(f: Fields, name: string): { owner: Endpoint; grant: number; offset: number } {
  const r = reqMap(f, name);
  return { owner: reqInt(r, 'owner'), grant: reqInt(r, 'grant', 0), offset: optInt(r, 'offset', 0) ?? 0 };
}

function info(c: OpHost): unknown {
  const k = c.ctx.kernel;
  const base = { ...k.info(), dcs: k.listDcs(), connection: c.id, endpoints: c.bound.list() };
  const node = c.ctx.info;
  return node === undefined ? base : { ...base, node: node() };
}

function unbind(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  c.bound.forget(p);
  return c.tracked(id, p.unbind());
}

function send(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const dst = reqInt(f, 'dst');
  const msg = messageOf(f);
  return p.send(dst, msg, c.blocking(id, f));
}

function receive(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const src = reqInt(f, 'src');
  return p.receive(src, c.blocking(id, f));
}

function sendrec(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const dst = reqInt(f, 'dst');
  const msg = messageOf(f);
  return p.sendrec(dst, msg, c.blocking(id, f));
}

function receiveRequest(c: OpHost, f: Fields, id: number): unknown {
  return callerOf(c, f).receiveRequest(c.blocking(id, f));
}

function reply(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const dst = reqInt(f, 'dst');
  return c.tracked(id, p.reply(dst, messageOf(f)));
}

function replyAndReceive(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const dst = reqInt(f, 'dst');
  return p.replyAndReceive(dst, messageOf(f), c.blocking(id, f));
}

function notify(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const dst = reqInt(f, 'dst');
  const arg = optInt(f, 'arg', 0, 0xffffffff);
  return c.tracked(id, p.notify(dst, arg === undefined ? {} : { arg }));
}

function grant(c: OpHost, f: Fields): unknown {
  const p = callerOf(c, f);
  const grantId = reqInt(f, 'grant', 1);
  const length = reqInt(f, 'length', 0);
  const access = reqString(f, 'access', 16) as GrantAccess;
  const grantee = optInt(f, 'grantee') ?? ANY;
  const whileWaiting = optBool(f, 'whileWaiting') ?? true;
  c.bound.checkGrantRoom();
  const backend = c.grantRequests.backend(p.dcid, p.endpoint, grantId);
  const got = c.ctx.kernel.grantExternal(p.dcid, p.endpoint, backend, length, { grantee, access, whileWaiting }, grantId);
  c.bound.addGrant(p, got);
  return got;
}

function revoke(c: OpHost, f: Fields): unknown {
  const p = callerOf(c, f);
  const grantId = reqInt(f, 'grant', 1);
  p.revoke(grantId);
  c.bound.dropGrant(p, grantId);
  return null;
}

function copyFrom(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const owner = reqInt(f, 'owner');
  const grantId = reqInt(f, 'grant', 0);
  const offset = optInt(f, 'offset', 0) ?? 0;
  const length = reqInt(f, 'length', 0);
  const max = c.ctx.maxCopyBytes;
  if (length > max) throw new DvsError('EDVSMSGSIZE', `copyFrom of ${length} bytes exceeds the per-request limit of ${max}`, { details: { limit: max } });
  const into = new Uint8Array(length);
  return p.copyFrom({ owner, grant: grantId, offset }, into, c.blocking(id, f)).then((n) => into.subarray(0, n));
}

function copyTo(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const owner = reqInt(f, 'owner');
  const grantId = reqInt(f, 'grant', 0);
  const offset = optInt(f, 'offset', 0) ?? 0;
  const data = reqBytes(f, 'data', c.ctx.maxCopyBytes);
  return p.copyTo({ owner, grant: grantId, offset }, data, c.blocking(id, f));
}

function copy(c: OpHost, f: Fields, id: number): unknown {
  const p = callerOf(c, f);
  const src = grantRefOf(f, 'src');
  const dst = grantRefOf(f, 'dst');
  const length = reqInt(f, 'length', 0);
  return p.copy(src, dst, length, c.blocking(id, f));
}

function waitForBind(c: OpHost, f: Fields, id: number): unknown {
  const dcid = dcidOf(c, f);
  const target = reqInt(f, 'target');
  return c.ctx.kernel.waitForBind(dcid, target, c.blocking(id, f));
}

function waitForUnbind(c: OpHost, f: Fields, id: number): unknown {
  const dcid = dcidOf(c, f);
  const target = reqInt(f, 'target');
  return c.ctx.kernel.waitForUnbind(dcid, target, c.blocking(id, f));
}

function wakeup(c: OpHost, f: Fields): unknown {
  c.ctx.kernel.wakeup(dcidOf(c, f), reqInt(f, 'target'));
  return null;
}

function cancel(c: OpHost, f: Fields): unknown {
  return c.cancel(reqInt(f, 'target', 0));
}

function secondHello(): never {
  throw new DvsError('EDVSALREADY', 'hello was already accepted on this connection');
}

export function op(run: Op['run'], message = false): Op {
  return { run, message, control: false };
}

export function control(run: Op['run']): Op {
  return { run, message: false, control: true };
}

/** Every request a client may send after hello, by `op`. */
export const OPS: ReadonlyMap<string, Op> = new Map<string, Op>([
  ['ping', control(() => null)],
  ['info', control(info)],
  ['procs', op((c, f) => c.ctx.kernel.procs(dcidOf(c, f)))],
  ['bind', op(bindForClient)],
  ['unbind', control(unbind)],
  ['send', op(send)],
  ['receive', op(receive, true)],
  ['sendrec', op(sendrec, true)],
  ['receiveRequest', op(receiveRequest, true)],
  ['reply', op(reply)],
  ['replyAndReceive', op(replyAndReceive, true)],
  ['notify', op(notify)],
  ['grant', op(grant)],
  ['revoke', op(revoke)],
  ['copyFrom', op(copyFrom)],
  ['copyTo', op(copyTo)],
  ['copy', op(copy)],
  ['waitForBind', op(waitForBind)],
  ['waitForUnbind', op(waitForUnbind)],
  ['wakeup', op(wakeup)],
  ['cancel', control(cancel)],
  ['run', op(runProgram)],
  ['runs', op(listRuns)],
  ['stop', op(stopRun)],
  ['hello', op(secondHello)],
]);

/** The request's op (the protocol's own, or one the daemon added), or EDVSBADREQUEST for an unknown one. */
export function opOf(f: Fields, extra?: ReadonlyMap<string, Op>): Op {
  const name = f.op;
  const found = typeof name === 'string' ? (OPS.get(name) ?? extra?.get(name)) : undefined;
  if (found === undefined) throw new DvsError('EDVSBADREQUEST', `unknown op ${typeof name === 'string' ? JSON.stringify(name.slice(0, 40)) : String(name)}`, { details: { field: 'op' } });
  return found;
}
