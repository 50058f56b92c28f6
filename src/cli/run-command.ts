/**
 * `dvs run`: has one node's daemon start a program (docs/protocol.md, "Running programs"). The
 * daemon is found through the cluster file like `dvs ps` finds it; a DC the directory places on
 * the node but the daemon does not run yet (just created) is waited for within the timeout.
 */
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { RunInfo, RunRequest } from '../transport/run-spec.js';
import { listDcs, withNodeClient, type ReachOptions } from './admin.js';
import { readClusterFile } from './cluster-files.js';
import { DEFAULT_TIMEOUT_MS, sleep, UnreachableError } from './reach.js';

const RETRY_MS = 100;

/** `K=V` strings as an environment map (EDVSBADVALUE for one without `=` or with an empty name). */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new DvsError('EDVSBADVALUE', `--env takes NAME=VALUE, got ${JSON.stringify(pair)}`);
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}

/** Starts `spec` on node `nodeId` of the cluster in `dir`; resolves with the run once it runs. */
export async function runOnNode(dir: string, nodeId: number, spec: RunRequest, opts: ReachOptions = {}): Promise<RunInfo> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const cluster = readClusterFile(dir);
  const entry = cluster.nodes.find((n) => n.nodeId === nodeId);
  if (entry === undefined) throw new DvsError('EDVSBADNODEID', `node ${nodeId} is not in the cluster in ${cluster.dir}`);
  const got = await withNodeClient(
    nodeId,
    entry.dataDir,
    async (c) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await c.run(spec);
        } catch (err) {
          if (!isDvsError(err, 'EDVSBADDCID') || spec.dcid === undefined || Date.now() + RETRY_MS > deadline) throw err;
          // Only a DC the directory places on this node is worth waiting for.
          if (attempt === 0) {
            const dcs = await listDcs(dir, { timeoutMs: Math.max(1, deadline - Date.now()) });
            if (!dcs.some((d) => d.dcid === spec.dcid && d.nodes.includes(nodeId))) throw err;
          }
          await sleep(RETRY_MS);
        }
      }
    },
    { timeoutMs },
  );
  if (got === undefined) throw new UnreachableError(`the daemon of node ${nodeId}`, entry.dataDir, timeoutMs, 'no daemon runs there');
  return got;
}
