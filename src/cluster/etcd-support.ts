/**
 * Helpers of the etcd backend (etcd-store.ts): one etcd3 client per endpoint (with etcd3's own
 * retry and circuit-breaker policies off: EtcdStore chooses endpoints and retries itself), gRPC
 * channel readiness, key ranges, and the mapping of etcd / gRPC failures to `DvsError`s together
 * with whether the request may have been applied.
 */
import { createRequire } from 'node:module';
import type * as Grpc from '@grpc/grpc-js';
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCInternalError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  GRPCUnknownError,
  type IOptions,
} from 'etcd3';
import type * as Cockatiel from 'cockatiel';
import { DvsError, type DvsErrorCode } from '../ipc/errors.js';

// gRPC and cockatiel are etcd3's dependencies: load the very copies etcd3 uses.
const requireFromEtcd3 = createRequire(createRequire(import.meta.url).resolve('etcd3'));
const grpc = requireFromEtcd3('@grpc/grpc-js') as typeof Grpc;
const cockatiel = requireFromEtcd3('cockatiel') as typeof Cockatiel;

export type EtcdService = 'KV' | 'Lease' | 'Watch' | 'Maintenance';

export interface EtcdAuth {
  readonly username: string;
  readonly password: string;
}

/** TLS material, passed to gRPC as is (endpoints must then be `https://`). */
export interface EtcdTls {
  readonly rootCertificate: Buffer;
  readonly privateKey?: Buffer;
  readonly certChain?: Buffer;
}

/**
 * Every request carries etcd's "require leader" metadata (what etcd's Go client sets on watches):
 * a member that has lost its leader answers "no leader" at once (a failure that is safe to retry
 * elsewhere) and cancels its watch streams, instead of serving stale or stalled data.
 */
const requireLeader: Grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

export const DEFAULT_GRPC_OPTIONS: Readonly<Record<string, unknown>> = Object.freeze({
  // Reconnect quickly to a member that comes back (gRPC's default backoff grows to two minutes).
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  // Detect a dead peer under a long-lived watch; etcd refuses pings more often than every 5 s.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5000,
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
});

interface PoolInternals {
  readonly pool: { readonly hosts: readonly { getServiceClient(name: string): Grpc.Client }[] };
}

/** One etcd member's client. */
export class EtcdEndpoint {
  readonly client: Etcd3;

  constructor(
    readonly url: string,
    opts: { auth?: EtcdAuth; tls?: EtcdTls; grpcOptions?: Readonly<Record<string, unknown>> },
  ) {
    const options: IOptions = {
      hosts: url,
      grpcOptions: { ...DEFAULT_GRPC_OPTIONS, ...opts.grpcOptions, interceptors: [requireLeader] } as IOptions['grpcOptions'],
      faultHandling: { host: () => cockatiel.noop, global: cockatiel.noop },
      ...(opts.auth === undefined ? {} : { auth: { username: opts.auth.username, password: opts.auth.password } }),
      ...(opts.tls === undefined ? {} : { credentials: { ...opts.tls } }),
    };
    this.client = new Etcd3(options);
  }

  /**
   * Resolves true once the gRPC channel of `service` is connected, false if it is not within
   * `timeoutMs` (nothing was sent: any request may go to another member).
   */
  ready(service: EtcdService, timeoutMs: number): Promise<boolean> {
    let c: Grpc.Client;
    try {
      c = (this.client as unknown as PoolInternals).pool.hosts[0]!.getServiceClient(service);
    } catch {
      return Promise.resolve(false);
    }
    const ch = c.getChannel();
    const deadline = Date.now() + Math.max(1, timeoutMs);
    const { READY, TRANSIENT_FAILURE, SHUTDOWN } = grpc.connectivityState;
    return new Promise((resolve) => {
      const check = (): void => {
        const state = ch.getConnectivityState(true);
        if (state === READY) return resolve(true);
        // A refused connection fails at once (gRPC retries it in the background, with backoff).
        if (state === TRANSIENT_FAILURE || state === SHUTDOWN || Date.now() >= deadline) return resolve(false);
        ch.watchConnectivityState(state, deadline, (err) => (err === undefined || err === null ? check() : resolve(false)));
      };
      check();
    });
  }

  close(): void {
    this.client.close();
  }
}

// ------------------------------------------------------------------ keys

export function keyBytes(key: string): Buffer {
  return Buffer.from(key, 'utf8');
}

/** etcd's [key, range_end) for every key starting with `prefix` ('' = every key). */
export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  if (prefix === '') return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  const start = keyBytes(prefix);
  const end = Buffer.from(start);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return { key: start, range_end: end.subarray(0, i + 1) };
    }
  }
  // All 0xff: every key from `prefix` on.
  return { key: start, range_end: Buffer.from([0]) };
}

/** int64 fields arrive as decimal strings. */
export function num(v: string | number | undefined | null): number {
  return v === undefined || v === null ? 0 : Number(v);
}

// ------------------------------------------------------------------ failures

/**
 * - `fatal`: the answer (retrying cannot change it).
 * - `unsent`: the request certainly did not take effect (no connection, no leader, proposal
 *   dropped, too many requests): any call may be retried on another member.
 * - `unknown`: it may have taken effect (connection lost or deadline passed after it was sent):
 *   only idempotent calls are retried.
 */
export type FailureKind = 'fatal' | 'unsent' | 'unknown';

export interface Failure {
  readonly kind: FailureKind;
  readonly error: DvsError;
}

function make(kind: FailureKind, code: DvsErrorCode, err: Error, what: string): Failure {
  return { kind, error: new DvsError(code, `etcd: ${what}: ${err.message}`, { cause: err }) };
}

const UNSENT = /etcdserver: no leader|raft proposal dropped|etcdserver: not capable|etcdserver: too many requests|No connection established|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|Name resolution failed|etcdserver: unhealthy cluster/;
const TIMEOUT = /request timed out|Deadline exceeded|DEADLINE_EXCEEDED/i;
const DROPPED = /leader changed|server stopped|ECONNRESET|EPIPE|Connection dropped|RST_STREAM|GOAWAY|stream removed|Stream refused|UNAVAILABLE|CANCELLED/;

export function classify(err: unknown): Failure {
  if (err instanceof DvsError) return { kind: 'fatal', error: err };
  const e = err instanceof Error ? err : new Error(String(err));
  const m = e.message;
  if (e instanceof ClientClosedError) return make('fatal', 'EDVSSHUTDOWN', e, 'client closed');
  if (e instanceof EtcdLeaseInvalidError || m.includes('requested lease not found')) return make('fatal', 'EDVSNOENT', e, 'lease not found (expired or revoked)');
  if (m.includes('required revision has been compacted')) return make('fatal', 'EDVSRANGE', e, 'revision compacted');
  if (/request is too large|larger than max|message larger than/.test(m)) return make('fatal', 'EDVSMSGSIZE', e, 'request or reply too large');
  if (/too many operations in txn|duplicate key given in txn|key is not provided|value is not provided|lease TTL too large/.test(m)) return make('fatal', 'EDVSINVAL', e, 'refused');
  if (
    e instanceof EtcdAuthenticationFailedError ||
    e instanceof EtcdPermissionDeniedError ||
    e instanceof EtcdInvalidAuthTokenError ||
    e instanceof GRPCUnauthenticatedError ||
    /permission denied|authentication failed|invalid auth token|user name is empty/.test(m)
  ) {
    return make('fatal', 'EDVSACCES', e, 'access denied');
  }
  if (UNSENT.test(m)) return make('unsent', 'EDVSNOTCONN', e, 'unreachable');
  if (e instanceof GRPCDeadlineExceededError || TIMEOUT.test(m)) return make('unknown', 'EDVSTIMEDOUT', e, 'no reply in time');
  if (e instanceof GRPCUnavailableError || e instanceof GRPCCancelledError || e instanceof GRPCInternalError || e instanceof GRPCUnknownError || DROPPED.test(m)) {
    return make('unknown', 'EDVSNOTCONN', e, 'connection lost');
  }
  return make('fatal', 'EDVSIO', e, 'failed');
}
