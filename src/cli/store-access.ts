/**
 * Opens the coordination store a command works on, waiting for it up to a timeout: the embedded
 * store's client retries the connection until then, and etcd is asked for its revision until a
 * member answers. Failing that, an UnreachableError names the store, its address and the last error.
 */
import { isDvsError } from '../ipc/errors.js';
import type { CoordinationStore } from '../cluster/store.js';
import { StoreClient } from '../cluster/store-client.js';
import type { ClusterStore } from './cluster-files.js';
import { reasonOf, sleep, UnreachableError, withDeadline } from './reach.js';

/** Longest pause between two connection attempts: a store that comes back is found quickly. */
const RETRY_MAX_MS = 250;

/** `what` names the store in the error, e.g. "the embedded store of the cluster in /path". */
export async function openStore(target: ClusterStore, key: Buffer, timeoutMs: number, what: string): Promise<CoordinationStore> {
  if (target.backend === 'embedded') {
    try {
      return await StoreClient.connect({ host: target.host, port: target.port, clusterKey: key, connectTimeoutMs: timeoutMs, reconnectMaxMs: RETRY_MAX_MS });
    } catch (err) {
      if (!isDvsError(err, 'EDVSNOTCONN')) throw err;
      const last = err.details?.lastError;
      throw new UnreachableError(what, `${target.host}:${target.port}`, timeoutMs, typeof last === 'string' ? last : undefined);
    }
  }
  // Not imported up front: the etcd client (gRPC) is slow to load.
  const { EtcdStore } = await import('../cluster/etcd-store.js');
  const etcd = new EtcdStore({ endpoints: target.endpoints, dialTimeoutMs: Math.min(2000, timeoutMs), requestTimeoutMs: Math.min(5000, timeoutMs) });
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      await withDeadline(etcd.revision(), left, () => new Error('no answer'));
      return etcd;
    } catch (err) {
      last = err;
    }
    await sleep(Math.min(RETRY_MAX_MS, Math.max(0, deadline - Date.now())));
  }
  await etcd.close().catch(() => undefined);
  throw new UnreachableError(what, target.endpoints.join(','), timeoutMs, last === undefined ? undefined : reasonOf(last));
}
