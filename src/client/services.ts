/**
 * The daemon's service and migration requests from the client library (docs/protocol.md,
 * "Services and migration"): start a coroutine service from an ES module in the daemon, list them,
 * and move an endpoint to another node with the daemon as the move's coordinator.
 */
import type { Endpoint } from '../ipc/endpoint.js';
import type { Payload } from '../ipc/payload.js';
import type { MigrationReport } from '../services/migration-agent.js';
import type { DvsClient } from './client.js';

export interface HostedServiceInfo {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  readonly name: string;
  readonly module: string;
}

/** A move's report (src/services/migration-agent.ts). */
export type MigrationResult = MigrationReport;

export interface ServeOptions {
  readonly slot?: number;
  readonly name?: string;
  readonly args?: Payload;
}

export interface MigrateRequest {
  readonly freezeMs?: number;
  readonly quiesceMs?: number;
  /** Bound on the whole request (default: freezeMs + 5 s). */
  readonly timeoutMs?: number;
}

/** Starts the service a module exports (an absolute path on the daemon's host) in the daemon, on a new endpoint of `dcid`. */
export async function serveModule(client: DvsClient, dcid: number, module: string, opts: ServeOptions = {}): Promise<HostedServiceInfo> {
  return (await client.call('serve', { dcid, module, ...opts })) as HostedServiceInfo;
}

export async function hostedServices(client: DvsClient): Promise<HostedServiceInfo[]> {
  return (await client.call('services', {})) as HostedServiceInfo[];
}

/** Moves `endpoint` of `dcid` to node `to`, the daemon of `client` coordinating. */
export async function migrate(client: DvsClient, dcid: number, endpoint: Endpoint, to: number, opts: MigrateRequest = {}): Promise<MigrationResult> {
  const fields = { dcid, endpoint, to, ...(opts.freezeMs === undefined ? {} : { freezeMs: opts.freezeMs }), ...(opts.quiesceMs === undefined ? {} : { quiesceMs: opts.quiesceMs }) };
  return (await client.call('migrate', fields, { timeoutMs: opts.timeoutMs ?? (opts.freezeMs ?? 30_000) + 5000 })) as MigrationResult;
}
