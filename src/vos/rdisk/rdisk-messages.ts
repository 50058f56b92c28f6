/**
 * RDISK's wire protocol (docs/vos/rdisk.md): request types, their payloads as validated here, and
 * the limits. A request is a sendrec (answered by reply) or, with a `tag`, a plain send answered by
 * an RD_DONE message sent back: a server that must keep receiving while its disk works (FS) uses the
 * tagged form. Data moves through the requester's grant, or inline when it is small.
 */
import { DvsError } from '../../ipc/errors.js';
import type { Payload } from '../../ipc/payload.js';
import { badField, fieldsOf, intIn, optBytes, optIntIn, shown } from '../../transport/request-fields.js';

/** Request types: RDISK's range starts at 0x900. */
export const RD_OPEN = 0x900;
export const RD_READ = 0x901;
export const RD_WRITE = 0x902;
export const RD_FLUSH = 0x903;
export const RD_SIZE = 0x904;
/** The message RDISK sends back for a tagged request. */
export const RD_DONE = 0x90f;

/** Most bytes one read or write moves. */
export const RD_MAX_IO = 8 * 1024 * 1024;
/** Most extents in one request. */
export const RD_MAX_EXTENTS = 1024;
/** Most bytes carried inline (in the request or the reply) instead of through a grant. */
export const RD_MAX_INLINE = 32 * 1024;
/** Largest tag. */
export const RD_MAX_TAG = 2 ** 32 - 1;
/** The protocol version RD_OPEN reports. */
export const RD_VERSION = 1;

/** A run of bytes on the device. */
export interface Extent {
  readonly offset: number;
  readonly length: number;
}

interface Tagged {
  /** Present: answer with an RD_DONE send carrying it, not a reply. */
  readonly tag: number | undefined;
}
export interface OpenRequest extends Tagged {
  readonly op: 'open';
}
export interface SizeRequest extends Tagged {
  readonly op: 'size';
}
export interface FlushRequest extends Tagged {
  readonly op: 'flush';
}
export interface ReadRequest extends Tagged {
  readonly op: 'read';
  readonly extents: readonly Extent[];
  readonly bytes: number;
  /** The requester's grant to copy the data into (write access for RDISK); absent: inline in the answer. */
  readonly grant: number | undefined;
  readonly grantOffset: number;
}
export interface WriteRequest extends Tagged {
  readonly op: 'write';
  readonly extents: readonly Extent[];
  readonly bytes: number;
  /** The requester's grant holding the data (read access for RDISK), or the data inline. */
  readonly grant: number | undefined;
  readonly grantOffset: number;
  readonly data: Uint8Array | undefined;
}
export type RdiskRequest = OpenRequest | SizeRequest | FlushRequest | ReadRequest | WriteRequest;

function extentsOf(f: Record<string, unknown>): { extents: Extent[]; bytes: number } {
  let extents: Extent[];
  if (f.extents !== undefined && f.extents !== null) {
    if (f.offset !== undefined || f.length !== undefined) badField('extents', 'give extents, or offset and length, not both');
    if (!Array.isArray(f.extents) || f.extents.length === 0 || f.extents.length > RD_MAX_EXTENTS) badField('extents', `must be 1..${RD_MAX_EXTENTS} [offset, length] pairs, got ${shown(f.extents)}`);
    extents = (f.extents as unknown[]).map((e, i) => {
      if (!Array.isArray(e) || e.length !== 2) badField(`extents[${i}]`, `must be [offset, length], got ${shown(e)}`);
      return { offset: intIn(e[0], `extents[${i}][0]`, 0, Number.MAX_SAFE_INTEGER), length: intIn(e[1], `extents[${i}][1]`, 1, RD_MAX_IO) };
    });
  } else {
    extents = [{ offset: intIn(f.offset, 'offset', 0, Number.MAX_SAFE_INTEGER), length: intIn(f.length, 'length', 1, RD_MAX_IO) }];
  }
  let bytes = 0;
  for (const e of extents) bytes += e.length;
  if (bytes > RD_MAX_IO) badField('extents', `move ${bytes} bytes, more than ${RD_MAX_IO} in one request`);
  return { extents, bytes };
}

const IO_FIELDS = ['offset', 'length', 'extents', 'grant', 'grantOffset', 'tag'];

/** The request a message carries; EDVSBADREQUEST for an unknown type, EDVSINVAL for a bad payload. */
export function parseRdiskRequest(type: number, payload: Payload): RdiskRequest {
  switch (type) {
    case RD_OPEN:
    case RD_SIZE:
    case RD_FLUSH: {
      const op = type === RD_OPEN ? 'open' : type === RD_SIZE ? 'size' : 'flush';
      const f = fieldsOf(payload, ['tag'], op, true);
      return { op, tag: optIntIn(f.tag, 'tag', 0, RD_MAX_TAG) };
    }
    case RD_READ: {
      const f = fieldsOf(payload, IO_FIELDS, 'read');
      const { extents, bytes } = extentsOf(f);
      const grant = optIntIn(f.grant, 'grant', 0, Number.MAX_SAFE_INTEGER);
      if (grant === undefined && bytes > RD_MAX_INLINE) badField('grant', `a read of ${bytes} bytes needs a grant (inline answers hold at most ${RD_MAX_INLINE})`);
      return { op: 'read', extents, bytes, grant, grantOffset: optIntIn(f.grantOffset, 'grantOffset', 0, Number.MAX_SAFE_INTEGER) ?? 0, tag: optIntIn(f.tag, 'tag', 0, RD_MAX_TAG) };
    }
    case RD_WRITE: {
      const f = fieldsOf(payload, [...IO_FIELDS, 'data'], 'write');
      const { extents, bytes } = extentsOf(f);
      const grant = optIntIn(f.grant, 'grant', 0, Number.MAX_SAFE_INTEGER);
      const data = optBytes(f.data, 'data', RD_MAX_INLINE);
      if ((grant === undefined) === (data === undefined)) badField('data', 'a write carries its data inline or names a grant holding it (one of the two)');
      if (data !== undefined && data.length !== bytes) badField('data', `holds ${data.length} bytes, the extents ${bytes}`);
      return { op: 'write', extents, bytes, grant, grantOffset: optIntIn(f.grantOffset, 'grantOffset', 0, Number.MAX_SAFE_INTEGER) ?? 0, data, tag: optIntIn(f.tag, 'tag', 0, RD_MAX_TAG) };
    }
    default:
      throw new DvsError('EDVSBADREQUEST', `unknown RDISK request type ${type} (0x${type.toString(16)}); RDISK takes 0x900..0x904`, { details: { type } });
  }
}

/** The tag of a request that could not be parsed, so a tagged requester still hears of its failure. */
export function tagOf(payload: Payload): number | undefined {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload) || payload instanceof Uint8Array) return undefined;
  const t = (payload as Record<string, unknown>).tag;
  return typeof t === 'number' && Number.isInteger(t) && t >= 0 && t <= RD_MAX_TAG ? t : undefined;
}
