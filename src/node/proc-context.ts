/**
 * What every connection of one ProcServer shares: the kernel, the token, the limits, the bind hook,
 * the logger and the counters.
 */
import type { Kernel } from '../kernel/kernel.js';
import type { Process } from '../kernel/process.js';
import type { ProcConnection } from './proc-conn.js';
import { silentLogger, type Logger } from '../runtime/logger.js';

/** Structured logger (pino's call shape). */
export type ProcLogger = Logger;
export { silentLogger };

/** How the daemon binds an endpoint for a client (default: `kernel.bind`). */
export type BindHook = (dcid: number, opts: { slot?: number; endpoint?: number; name?: string }) => Process | Promise<Process>;

/** Counters of one ProcServer, for operators. */
export interface ProcServerStats {
  accepted: number;
  refused: number;
  authFailures: number;
  protocolErrors: number;
  requests: number;
  errorResponses: number;
}

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
  /** Called once when a connection's socket is gone. */
  closed(conn: ProcConnection): void;
}
