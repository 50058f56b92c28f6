/**
 * DS's wire protocol (docs/vos/ds.md): the request type numbers, the payload of each request as
 * it is validated, the replies, and the documented limits. Plain data over M3-IPC sendrec, so a
 * client in any language can speak it from the doc alone; every field is checked here, because a
 * request comes from any process of the DC.
 */
import { ANY, NONE, SELF, type Endpoint } from '../../ipc/endpoint.js';
import { DvsError, ERRNO } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { asInt } from '../../transport/proc-protocol.js';
import type { ErrorReply } from '../server-replies.js';
import { badField as bad, fieldsOf, intIn, optBool, shown } from '../../transport/request-fields.js';

/** Request types: DS's range starts at 0x800, as MINIX's DS_RQ_BASE. */
export const DS_PUBLISH = 0x800;
export const DS_LOOKUP = 0x801;
export const DS_WAIT = 0x802;
export const DS_UNPUBLISH = 0x803;
export const DS_LIST = 0x804;

/** Reply type of a success; a failure's reply type is its errno (negative). */
export const DS_OK = 0;

/** Longest name, in characters (all of them printable ASCII, so also in bytes). */
export const DS_MAX_NAME = 64;
/** Most names one DS holds. */
export const DS_MAX_NAMES = 4096;
/** Most waiters for one name. */
export const DS_MAX_WAITERS_PER_NAME = 64;
/** Most waiters in all. */
export const DS_MAX_WAITERS = 1024;
/** Longest wait one request may ask for; a client that wants longer asks again. */
export const DS_MAX_WAIT_MS = 600_000;
/** Most entries in one list reply (the page size). */
export const DS_MAX_LIST = 256;

export interface PublishRequest {
  readonly op: 'publish';
  readonly name: string;
  /** Absent: the caller's own endpoint. */
  readonly endpoint: Endpoint | undefined;
  readonly replace: boolean;
}
export interface LookupRequest {
  readonly op: 'lookup';
  readonly name: string;
}
export interface WaitRequest {
  readonly op: 'wait';
  readonly name: string;
  readonly timeoutMs: number;
}
export interface UnpublishRequest {
  readonly op: 'unpublish';
  readonly name: string;
  readonly force: boolean;
}
export interface ListRequest {
  readonly op: 'list';
  readonly prefix: string;
  /** Names after this one (the previous page's `next`). */
  readonly after: string | undefined;
  readonly limit: number;
}
export type DsRequest = PublishRequest | LookupRequest | WaitRequest | UnpublishRequest | ListRequest;

/** One name and the endpoint it maps to. */
export interface DsEntry {
  readonly name: string;
  readonly endpoint: Endpoint;
}

/** A failed request's reply payload (its reply type is `error.errno`). */
export type DsErrorReply = ErrorReply;

const NAME_RE = /^[\x21-\x7e]*$/;



/** A DS name: 1..64 printable ASCII characters, no spaces (EDVSNAMESIZE for the length, EDVSINVAL otherwise). */
export function checkName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string') bad(field, `must be a string, got ${shown(v)}`);
  if (v.length < 1 || v.length > DS_MAX_NAME) {
    throw new DvsError('EDVSNAMESIZE', `${field}: must be 1..${DS_MAX_NAME} characters, got ${v.length}`, { details: { field, length: v.length } });
  }
  if (!NAME_RE.test(v)) bad(field, `must be printable ASCII without spaces, got ${shown(v)}`);
  return v;
}

/** An endpoint a name may map to: a safe integer that is not ANY, NONE or SELF. */
export function checkEndpointField(v: unknown, field = 'endpoint'): Endpoint {
  const ep = asInt(v);
  if (ep === undefined) bad(field, `must be an integer endpoint, got ${shown(v)}`);
  if (ep === ANY || ep === NONE || ep === SELF) bad(field, `must name a process, got the reserved value ${ep}`);
  return ep;
}




/** The request a message carries; EDVSBADREQUEST for an unknown type, EDVSINVAL / EDVSNAMESIZE for a bad payload. */
export function parseDsRequest(type: number, payload: Payload): DsRequest {
  switch (type) {
    case DS_PUBLISH: {
      const f = fieldsOf(payload, ['name', 'endpoint', 'replace'], 'publish');
      const endpoint = f.endpoint === undefined || f.endpoint === null ? undefined : checkEndpointField(f.endpoint);
      return { op: 'publish', name: checkName(f.name), endpoint, replace: optBool(f.replace, 'replace') };
    }
    case DS_LOOKUP: {
      const f = fieldsOf(payload, ['name'], 'lookup');
      return { op: 'lookup', name: checkName(f.name) };
    }
    case DS_WAIT: {
      const f = fieldsOf(payload, ['name', 'timeoutMs'], 'wait');
      return { op: 'wait', name: checkName(f.name), timeoutMs: intIn(f.timeoutMs, 'timeoutMs', 0, DS_MAX_WAIT_MS) };
    }
    case DS_UNPUBLISH: {
      const f = fieldsOf(payload, ['name', 'force'], 'unpublish');
      return { op: 'unpublish', name: checkName(f.name), force: optBool(f.force, 'force') };
    }
    case DS_LIST: {
      const f = payload === undefined || payload === null ? {} : fieldsOf(payload, ['prefix', 'after', 'limit'], 'list');
      let prefix = '';
      if (f.prefix !== undefined && f.prefix !== null) {
        if (typeof f.prefix !== 'string') bad('prefix', `must be a string, got ${shown(f.prefix)}`);
        // The empty prefix lists everything; any other must be a valid start of a name.
        prefix = f.prefix === '' ? '' : checkName(f.prefix, 'prefix');
      }
      const after = f.after === undefined || f.after === null ? undefined : checkName(f.after, 'after');
      const limit = f.limit === undefined || f.limit === null ? DS_MAX_LIST : intIn(f.limit, 'limit', 1, DS_MAX_LIST);
      return { op: 'list', prefix, after, limit };
    }
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown DS request type ${type} (0x${type.toString(16)}); DS takes 0x800..0x804`, { details: { type } });
  }
}

export { errorReply, okReply } from '../server-replies.js';

/** What a probe reply says if it ever reaches a peer (DS never probes one it owes a reply). */
export const PROBE_REPLY = { type: ERRNO.EDVSAGAIN, payload: { ok: false, error: { code: 'EDVSAGAIN', errno: ERRNO.EDVSAGAIN, message: 'EDVSAGAIN: DS liveness probe; call again' } } };
