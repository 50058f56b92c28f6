/**
 * What every connection of one ProcServer shares: the kernel, the token, the limits, the bind hook,
 * the logger and the counters.
 */
import type { AbortLike } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import type { ProcConnection } from './proc-conn.js';
import type { Op } from './proc-ops.js';
import type { Logger } from '../runtime/logger.js';
import type { RunHost } from './proc-runs.js';


/** What the bind hook is given: the request's slot, endpoint and name unchanged, its timeout, and the call's abort signal. */
export interface BindHookOptions {
  readonly slot?: number;
  readonly endpoint?: Endpoint;
  readonly name?: string;
  /** How long the bind may take (absent: no bound); the call fails with EDVSTIMEDOUT past it, and `signal` aborts. */
  readonly timeoutMs?: number;
  /** Aborted when the call ends before the hook (timeout, cancel, the connection closing): the hook should give up. */
  readonly signal: AbortLike;
  /** The run the binding connection said it belongs to (hello field `run`). */
  readonly run?: number;
}

/** A bind hook's Process with what the client is told about it: the endpoint of a service moved here. */
export interface BoundForClient {
  readonly process: Process;
  /** The state the service's previous incarnation gave in its snapshot (at most MAX_SNAPSHOT_BYTES), sent as `restored`. */
  readonly restored?: Uint8Array;
  /** The endpoint of a moved service: sent as `migrated: true`. */
  readonly migrated?: boolean;
}

/**
 * How the daemon binds an endpoint for a client (default: `kernel.bind`). It must bind in the
 * server's kernel and return the Process (or the Process with the state it restores), or fail with
 * a DvsError; it may be asynchronous.
 */
export type BindHook = (dcid: number, opts: BindHookOptions) => Process | BoundForClient | Promise<Process | BoundForClient>;

/** Counters of one ProcServer, for operators: what shows an attack or an overload. */
export interface ProcServerStats {
  /** Connections open now (authenticated or not). */
  open: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections refused: the server was full or closing. */
  refused: number;
  /** Handshakes failed: no hello, a wrong token, a bad version or a malformed hello. */
  authFailures: number;
  /** Connections closed for breaking the protocol (a frame refused). */
  protocolErrors: number;
  /** Bytes read from and written to client sockets. */
  bytesIn: number;
  bytesOut: number;
  /** Requests received after hello, and those answered with an error. */
  requests: number;
  errorResponses: number;
  /** Times a connection's budget for one event-loop turn ran out and the rest of its frames waited for a later turn. */
  slicesYielded: number;
  /** Times a connection's socket stopped being read because too many of its frames waited. */
  readPauses: number;
}

export function newProcServerStats(): ProcServerStats {
  return { open: 0, accepted: 0, refused: 0, authFailures: 0, protocolErrors: 0, bytesIn: 0, bytesOut: 0, requests: 0, errorResponses: 0, slicesYielded: 0, readPauses: 0 };
}

/** Limits and shared state every connection of one server uses. */
export interface ConnContext {
  readonly kernel: Kernel;
  readonly token: string;
  readonly logger: Logger;
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
  /** Requests the daemon adds to the protocol's own (its services, migration). */
  readonly ops: ReadonlyMap<string, Op> | undefined;
  /** The daemon's own state, answered as field `node` of `info`. */
  readonly info: (() => Record<string, unknown>) | undefined;
  /** Serves `run`, `runs` and `stop` (the daemon's supervisor); absent: they fail with EDVSNOSYS. */
  readonly runs: RunHost | undefined;
  /** Called once when a connection's socket is gone. */
  closed(conn: ProcConnection): void;
}
