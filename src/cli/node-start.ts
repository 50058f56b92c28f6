/** `dvs node start`: runs one node daemon in this process until SIGTERM or SIGINT. */
import { Daemon } from '../node/daemon.js';
import { loadNodeConfig, parseNodeConfig, type NodeConfig } from '../node/config.js';
import { readClusterKeyFile } from './cluster-files.js';
import { DEFAULT_TIMEOUT_MS } from './reach.js';
import { openStore } from './store-access.js';

export interface NodeStartFlags {
  readonly config?: string;
  readonly nodeId?: string;
  readonly listen?: string;
  readonly dataDir?: string;
  readonly clusterKeyFile?: string;
  readonly store?: string;
  readonly serveStore?: boolean;
  readonly etcd?: string;
  readonly logLevel?: string;
}

export function configFromFlags(flags: NodeStartFlags): NodeConfig {
  if (flags.config !== undefined) return loadNodeConfig(flags.config);
  return parseNodeConfig({
    nodeId: flags.nodeId === undefined ? undefined : Number(flags.nodeId),
    listen: flags.listen ?? '127.0.0.1:0',
    dataDir: flags.dataDir,
    clusterKeyFile: flags.clusterKeyFile,
    store:
      flags.etcd === undefined
        ? { backend: 'embedded', serve: flags.serveStore === true, address: flags.store ?? '127.0.0.1:0' }
        : { backend: 'etcd', endpoints: flags.etcd.split(',').map((u) => u.trim()) },
    logLevel: flags.logLevel ?? 'info',
  });
}

/**
 * Waits up to `timeoutMs` for the store the node uses, unless the node serves it: the daemon itself
 * gives up on it sooner, and a node started while the store restarts should wait for it.
 */
async function waitForStore(config: NodeConfig, timeoutMs: number): Promise<void> {
  const s = config.store;
  if (s.backend === 'embedded' && s.serve) return;
  const key = await readClusterKeyFile(config.clusterKeyFile);
  const target = s.backend === 'etcd' ? { backend: 'etcd' as const, endpoints: s.endpoints } : { backend: 'embedded' as const, host: s.address.host, port: s.address.port };
  const store = await openStore(target, key, timeoutMs, `the ${s.backend === 'etcd' ? 'etcd cluster' : 'embedded store'} of node ${config.nodeId}`);
  await store.close();
}

export async function runNode(config: NodeConfig, opts: { readonly timeoutMs?: number } = {}): Promise<void> {
  await waitForStore(config, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const daemon = await Daemon.start(config);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      daemon.log.info({ signal }, 'signal received');
      daemon.stop().then(resolve, (err: unknown) => {
        daemon.log.error({ err }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
