/** dvsd configuration: one node's identity, addresses, data directory, store and timing. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DvsError } from '../ipc/errors.js';

export interface Address {
  readonly host: string;
  readonly port: number;
}

export interface EmbeddedStoreConfig {
  readonly backend: 'embedded';
  /** This daemon serves the embedded store on `address` (exactly one daemon per cluster does). */
  readonly serve: boolean;
  readonly address: Address;
}

export interface EtcdStoreConfig {
  readonly backend: 'etcd';
  /** Client URLs of the etcd members, e.g. `http://10.0.0.1:2379`. */
  readonly endpoints: readonly string[];
}

export type StoreConfig = EmbeddedStoreConfig | EtcdStoreConfig;

export interface TimingConfig {
  readonly heartbeatMs: number;
  readonly suspectMs: number;
  /** Grace after which a silent peer is declared down and callers waiting on it fail. */
  readonly deadMs: number;
}

export interface TlsConfig {
  readonly keyFile: string;
  readonly certFile: string;
  readonly caFile: string;
}

export interface NodeConfig {
  readonly nodeId: number;
  /** Where this node's link listener binds; port 0 picks a free one. */
  readonly listen: Address;
  readonly dataDir: string;
  /** File holding the cluster key (hex), shared by every node; links and the store authenticate with it. */
  readonly clusterKeyFile: string;
  readonly store: StoreConfig;
  readonly timing: TimingConfig;
  readonly tls?: TlsConfig;
  /** Compress link frames of at least this many bytes (LZ4); absent = never. */
  readonly compressMinBytes?: number;
  readonly logLevel: string;
}

export const DEFAULT_TIMING: TimingConfig = Object.freeze({ heartbeatMs: 500, suspectMs: 1500, deadMs: 3000 });

/** Paths inside a node's data directory. */
export function nodePaths(dataDir: string): { socket: string; token: string; log: string; runtime: string } {
  return {
    socket: path.join(dataDir, 'dvsd.sock'),
    token: path.join(dataDir, 'token'),
    log: path.join(dataDir, 'dvsd.log'),
    runtime: path.join(dataDir, 'node.json'),
  };
}

function bad(message: string): never {
  throw new DvsError('EDVSBADVALUE', `config: ${message}`);
}

function int(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(`${name} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
  return v;
}

function str(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) bad(`${name} must be a non-empty string`);
  return v;
}

function address(name: string, v: unknown): Address {
  if (typeof v === 'string') {
    const i = v.lastIndexOf(':');
    if (i <= 0) bad(`${name} must be host:port, got ${v}`);
    return { host: v.slice(0, i), port: int(`${name} port`, Number(v.slice(i + 1)), 0, 65535) };
  }
  const a = v as Partial<Address> | undefined;
  return { host: str(`${name}.host`, a?.host), port: int(`${name}.port`, a?.port, 0, 65535) };
}

/** Validates a raw (parsed JSON or CLI) configuration, filling defaults. */
export function parseNodeConfig(raw: unknown): NodeConfig {
  if (raw === null || typeof raw !== 'object') bad('must be an object');
  const r = raw as Record<string, unknown>;
  const store = (r.store ?? {}) as Record<string, unknown>;
  const backend = store.backend ?? 'embedded';
  let storeConfig: StoreConfig;
  if (backend === 'embedded') {
    storeConfig = { backend: 'embedded', serve: store.serve === true, address: address('store.address', store.address) };
  } else if (backend === 'etcd') {
    const endpoints = store.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0 || !endpoints.every((e) => typeof e === 'string' && /^https?:\/\/[^/]+$/.test(e))) {
      bad('store.endpoints must be a non-empty list of http(s)://host:port URLs');
    }
    storeConfig = { backend: 'etcd', endpoints: endpoints as string[] };
  } else {
    bad(`unknown store backend ${JSON.stringify(backend)}`);
  }
  const timing = (r.timing ?? {}) as Record<string, unknown>;
  const t: TimingConfig = {
    heartbeatMs: int('timing.heartbeatMs', timing.heartbeatMs ?? DEFAULT_TIMING.heartbeatMs, 10, 600_000),
    suspectMs: int('timing.suspectMs', timing.suspectMs ?? DEFAULT_TIMING.suspectMs, 10, 600_000),
    deadMs: int('timing.deadMs', timing.deadMs ?? DEFAULT_TIMING.deadMs, 10, 600_000),
  };
  if (!(t.heartbeatMs < t.suspectMs && t.suspectMs <= t.deadMs)) bad('timing must satisfy heartbeatMs < suspectMs <= deadMs');
  const tlsRaw = r.tls as Record<string, unknown> | undefined;
  const cfg: NodeConfig = {
    nodeId: int('nodeId', r.nodeId, 0, 4095),
    listen: address('listen', r.listen ?? '127.0.0.1:0'),
    dataDir: path.resolve(str('dataDir', r.dataDir)),
    clusterKeyFile: path.resolve(str('clusterKeyFile', r.clusterKeyFile)),
    store: storeConfig,
    timing: t,
    ...(tlsRaw === undefined ? {} : { tls: { keyFile: str('tls.keyFile', tlsRaw.keyFile), certFile: str('tls.certFile', tlsRaw.certFile), caFile: str('tls.caFile', tlsRaw.caFile) } }),
    ...(r.compressMinBytes === undefined ? {} : { compressMinBytes: int('compressMinBytes', r.compressMinBytes, 1, 1 << 30) }),
    logLevel: typeof r.logLevel === 'string' ? r.logLevel : 'info',
  };
  return cfg;
}

export function loadNodeConfig(file: string): NodeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DvsError('EDVSBADFILE', `cannot read config ${file}: ${(err as Error).message}`);
  }
  return parseNodeConfig(raw);
}
