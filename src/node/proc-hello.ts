/**
 * The hello step of a process connection (docs/protocol.md §4): the first request must be `hello`
 * with the protocol version and the daemon's token; its result announces the node and the limits.
 */
import { DvsError } from '../ipc/errors.js';
import { MAX_CLIENT_NAME, MAX_TOKEN_LENGTH, PROC_PROTOCOL_VERSION, optBool, optInt, optString, reqInt, reqString, type Fields, type HelloResult } from '../transport/proc-protocol.js';
import { tokensEqual } from '../transport/proc-token.js';
import type { ConnContext } from './proc-context.js';

/** Who the client says it is, for logs. */
export interface HelloPeer {
  readonly pid?: number;
  readonly name?: string;
  /** The run (of this daemon's supervisor) the client says it belongs to: hello field `run`. */
  readonly run?: number;
}

/** An accepted hello: what to answer, who the peer is, and whether it takes LZ4 frames. */
export interface AcceptedHello {
  readonly result: HelloResult;
  readonly peer: HelloPeer;
  readonly lz4: boolean;
}

/** A refused hello: the error to answer with (the connection then closes). */
export class HelloRefused {
  constructor(
    readonly error: DvsError,
    readonly peer: HelloPeer,
  ) {}
}

/** Checks the first request of connection `connection`; never throws. */
export function checkHello(ctx: ConnContext, f: Fields, connection: number): AcceptedHello | HelloRefused {
  if (f.op !== 'hello') return new HelloRefused(new DvsError('EDVSPERM', 'the first request must be hello'), {});
  let peer: HelloPeer = {};
  let token: string;
  let lz4: boolean;
  try {
    const version = reqInt(f, 'version');
    token = reqString(f, 'token', MAX_TOKEN_LENGTH);
    const pid = optInt(f, 'pid', 0);
    const name = optString(f, 'name', MAX_CLIENT_NAME);
    lz4 = optBool(f, 'lz4') === true;
    const run = optInt(f, 'run', 1);
    peer = { ...(pid === undefined ? {} : { pid }), ...(name === undefined ? {} : { name }), ...(run === undefined ? {} : { run }) };
    if (version !== PROC_PROTOCOL_VERSION) throw new DvsError('EDVSPROTONOSUPPORT', `protocol version ${version} is not supported; this daemon speaks ${PROC_PROTOCOL_VERSION}`, { details: { version: PROC_PROTOCOL_VERSION } });
  } catch (err) {
    return new HelloRefused(err instanceof DvsError ? err : new DvsError('EDVSBADREQUEST', 'malformed hello'), peer);
  }
  if (!tokensEqual(ctx.token, token)) return new HelloRefused(new DvsError('EDVSACCES', 'wrong token'), peer);
  const k = ctx.kernel;
  const result: HelloResult = {
    version: PROC_PROTOCOL_VERSION,
    nodeId: k.nodeId,
    connection,
    maxFrameBytes: ctx.maxFrameBytes,
    maxPayloadBytes: k.limits.maxPayloadBytes,
    maxCopyChunk: k.limits.maxCopyChunk,
    maxCopyBytes: ctx.maxCopyBytes,
    maxInFlight: ctx.maxInFlight,
    maxEndpoints: ctx.maxEndpoints,
    maxGrants: ctx.maxGrants,
    settleMs: ctx.settleMs,
    ...(ctx.defaultDcid === undefined ? {} : { defaultDcid: ctx.defaultDcid }),
  };
  return { result, peer, lz4 };
}
