/**
 * dvsd: one node of a DVS cluster. Wires its subsystems together: the coordination store, the
 * kernel, the links to its peers, the directory and the reconciler that makes the kernel follow it
 * (cluster/reconciler.ts), and the process socket. They start in that order and stop in reverse;
 * the daemon's events are published on diagnostics channels (diagnostics.ts).
 */
import path from 'node:path';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
// Not the cluster barrel: it re-exports the etcd backend, whose gRPC stack costs every daemon
// about 0.3 s of start-up and 25 MB; that backend is loaded only when configured.
import { Directory } from '../cluster/directory.js';
import { MemoryStore } from '../cluster/memory-store.js';
import type { CoordinationStore } from '../cluster/store.js';
import { StoreClient } from '../cluster/store-client.js';
import { StoreServer } from '../cluster/store-server.js';
import { Reconciler } from '../cluster/reconciler.js';
import { DvsError } from '../ipc/errors.js';
import { Kernel, KERNEL_PROTOCOL_VERSION, type Process } from '../kernel/index.js';
import { systemClock } from '../runtime/system-clock.js';
import { InstanceHost } from './instance-host.js';
import { NodeServices } from './node-services.js';
import { RunHosting } from './run-hosting.js';
import { serviceOps } from './proc-services.js';
import { LinkManager, type LinkTlsOptions } from '../transport/link-manager.js';
import { nodePaths, type NodeConfig, type TlsConfig } from './config.js';
import { lockDataDir, unlockDataDir } from './data-dir-lock.js';
import { DIAGNOSTICS } from './diagnostics.js';
import { ProcServer } from './proc-server.js';
import { Supervisor } from './supervisor.js';
import { vosOps } from './proc-vos.js';
import { VosManager } from './vos-manager.js';
import { readClusterKeyFile } from '../transport/cluster-key.js';
import { createTokenFile, readTokenFile } from '../transport/proc-token.js';

/** What a running daemon publishes in `<dataDir>/node.json` for tools and tests. */
export interface NodeRuntimeInfo {
  readonly nodeId: number;
  readonly pid: number;
  readonly incarnation: number;
  readonly link: { readonly host: string; readonly port: number };
  readonly store:
    | { readonly backend: 'embedded'; readonly host: string; readonly port: number; readonly served: boolean }
    | { readonly backend: 'etcd'; readonly endpoints: readonly string[]; readonly served: false };
  readonly socket: string;
  readonly token: string;
  readonly startedAt: string;
}

export interface DaemonOptions {
  readonly logger?: Logger;
}

async function readTls(tls: TlsConfig): Promise<LinkTlsOptions> {
  try {
    const [key, cert, ca] = await Promise.all([readFile(tls.keyFile), readFile(tls.certFile), readFile(tls.caFile)]);
    return { key, cert, ca };
  } catch (err) {
    throw new DvsError('EDVSBADFILE', `cannot read TLS material: ${(err as Error).message}`);
  }
}

export class Daemon {
  readonly config: NodeConfig;
  readonly kernel: Kernel;
  readonly log: Logger;
  readonly incarnation: number;
  private readonly links: LinkManager;
  private store!: CoordinationStore;
  private storeServer: StoreServer | undefined;
  private directory!: Directory;
  private reconciler: Reconciler | undefined;
  private procServer!: ProcServer;
  /** The OS programs this daemon runs (`dvs run`); created with the process socket. */
  private supervisorOf: Supervisor | undefined;
  private services: NodeServices | undefined;
  private instances: InstanceHost | undefined;
  private vos: VosManager | undefined;
  private runtime!: NodeRuntimeInfo;
  /** The data directory's lock file, once taken. */
  private lockFile: string | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(config: NodeConfig, clusterKey: Buffer, tls: LinkTlsOptions | undefined, opts: DaemonOptions) {
    this.config = config;
    const node = config.nodeId;
    this.log = opts.logger ?? pino({ level: config.logLevel, base: { node } });
    this.incarnation = Date.now();
    this.links = new LinkManager({
      nodeId: node,
      incarnation: this.incarnation,
      clusterKey,
      ...(tls === undefined ? {} : { tls }),
      listen: config.listen,
      timing: config.timing,
      ...(config.compressMinBytes === undefined ? {} : { compressMinBytes: config.compressMinBytes }),
      kernelVersion: KERNEL_PROTOCOL_VERSION,
      logger: this.log.child({ sub: 'link' }),
      onFrame: (from, frame) => this.kernel.receiveFrame(from, frame),
      onPeerState: (peer, state, incarnation) => this.onPeerState(peer, state, incarnation),
    });
    this.kernel = new Kernel({
      nodeId: node,
      clock: systemClock,
      transport: this.links,
      observer: {
        bound: (dcid, endpoint, name) => DIAGNOSTICS.bind.publish({ node, dcid, endpoint, name }),
        unbound: (dcid, endpoint) => {
          DIAGNOSTICS.unbind.publish({ node, dcid, endpoint });
          this.reconciler?.localUnbound(dcid, endpoint);
        },
        refused: (from, kind, code) => DIAGNOSTICS.frameRefused.publish({ node, from, kind, code }),
      },
    });
  }

  /** Starts every subsystem; resolves once the node is registered and serving. */
  static async start(config: NodeConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    const key = await readClusterKeyFile(config.clusterKeyFile);
    const tls = config.tls === undefined ? undefined : await readTls(config.tls);
    const d = new Daemon(config, key, tls, opts);
    try {
      await d.startSubsystems(key);
    } catch (err) {
      await d.stop().catch(() => undefined);
      throw err;
    }
    return d;
  }

  get info(): NodeRuntimeInfo {
    return this.runtime;
  }

  private async startSubsystems(key: Buffer): Promise<void> {
    const { config, log } = this;
    const paths = nodePaths(config.dataDir);
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    this.lockFile = await lockDataDir(config.dataDir);

    // 1. The coordination store: etcd, the embedded one served here, or the embedded one reached over TCP.
    const storeInfo = await this.openStore(key);

    // 2. Links to peers.
    const link = await this.links.start();

    // 3. The directory, and the reconciler that makes the kernel and the links follow it.
    this.directory = new Directory(this.store);
    const node = config.nodeId;
    this.reconciler = new Reconciler({
      nodeId: node,
      kernel: this.kernel,
      directory: this.directory,
      links: {
        setPeers: (peers) => this.links.setPeers(peers),
        linkAlive: (peer) => {
          const state = this.links.peerState(peer)?.state;
          return state === 'up' || state === 'suspect';
        },
      },
      clock: systemClock,
      node: () => ({ host: link.host, port: link.port, meta: { socket: paths.socket, pid: process.pid } }),
      ttlMs: Math.max(config.timing.deadMs, 1000),
      logger: log.child({ sub: 'cluster' }),
      events: {
        dc: (e) => DIAGNOSTICS.dc.publish({ node, ...e }),
        registration: (s) => DIAGNOSTICS.registration.publish({ node, ...s }),
      },
    });
    await this.reconciler.start();

    // 4. Services hosted here and the migration agent.
    const reconcilerForServices = this.reconciler;
    this.services = new NodeServices({
      nodeId: node,
      kernel: this.kernel,
      directory: this.directory,
      bind: (dcid, o) => reconcilerForServices.bind(dcid, o),
      store: this.store,
      logger: log.child({ sub: 'services' }),
    });

    // Instances of instance groups that list this node (docs/instances.md).
    const instances = new InstanceHost({ nodeId: node, kernel: this.kernel, directory: this.directory, reconciler: this.reconciler, coroutines: this.services.coroutines, logger: log.child({ sub: 'instances' }) });
    this.instances = instances;

    // 5. The process socket.
    let token: string;
    try {
      token = await readTokenFile(paths.token, true);
    } catch {
      token = await createTokenFile(paths.token);
    }
    const reconciler = this.reconciler;
    const supervisor = new Supervisor({
      nodeId: node,
      socketPath: paths.socket,
      tokenPath: paths.token,
      dataDir: config.dataDir,
      logger: log.child({ sub: 'run' }),
      endpointsOf: (run) => this.procServer.endpointsOfRun(run),
      onEnded: (info) => this.vos?.runEnded(info.run),
    });
    this.supervisorOf = supervisor;
    const vos = new VosManager({
      nodeId: node,
      directory: this.directory,
      services: this.services,
      supervisor,
      dataDir: config.dataDir,
      env: { DVS_SOCKET: paths.socket, DVS_TOKEN_FILE: paths.token },
      logger: log.child({ sub: 'vos' }),
    });
    this.vos = vos;
    const runHosting = new RunHosting({ kernel: this.kernel, supervisor, procServer: () => this.procServer, logger: log.child({ sub: 'services' }) });
    this.services.addHosting(runHosting);
    this.procServer = new ProcServer({
      kernel: this.kernel,
      socketPath: paths.socket,
      token,
      logger: log.child({ sub: 'proc' }),
      // A program started for a move binds its endpoint when the endpoint arrives; others claim one.
      bind: (dcid, o) => runHosting.bind(dcid, o) ?? reconciler.bind(dcid, o),
      info: () => this.diagnostics(),
      runs: supervisor,
      ops: new Map([...serviceOps(this.services, instances), ...vosOps(vos)]),
      // A remote call past its timeout may wait until the far node is declared down.
      settleMs: config.timing.deadMs,
    });
    await this.procServer.start();
    vos.start();
    instances.start();

    this.runtime = {
      nodeId: config.nodeId,
      pid: process.pid,
      incarnation: this.incarnation,
      link,
      store: storeInfo,
      socket: paths.socket,
      token: paths.token,
      startedAt: new Date().toISOString(),
    };
    await writeFile(paths.runtime, JSON.stringify(this.runtime, null, 2) + '\n', { mode: 0o600 });
    log.info({ link, socket: paths.socket, incarnation: this.incarnation }, 'node started');
  }

  private async openStore(key: Buffer): Promise<NodeRuntimeInfo['store']> {
    const { config, log } = this;
    const storeConfig = config.store;
    if (storeConfig.backend === 'etcd') {
      const { EtcdStore } = await import('../cluster/etcd-store.js');
      const etcd = new EtcdStore({ endpoints: storeConfig.endpoints });
      this.store = etcd;
      await etcd.revision(); // fail fast when no member answers
      return { backend: 'etcd', endpoints: storeConfig.endpoints, served: false };
    }
    if (storeConfig.serve) {
      // Durable: DC definitions, generations and revisions survive a restart of this node.
      const storeDir = path.join(config.dataDir, 'store');
      await mkdir(storeDir, { recursive: true, mode: 0o700 });
      const memory = MemoryStore.open(storeDir);
      if (memory.truncatedOnOpen > 0) log.warn({ bytes: memory.truncatedOnOpen }, 'cut a torn tail off the store log');
      this.storeServer = new StoreServer({ clusterKey: key, store: memory, host: storeConfig.address.host, port: storeConfig.address.port });
      const address = await this.storeServer.listen();
      this.store = memory;
      log.info({ store: address, storeId: memory.storeId, revision: memory.revision }, 'serving the embedded store');
      return { backend: 'embedded', ...address, served: true };
    }
    this.store = await StoreClient.connect({ host: storeConfig.address.host, port: storeConfig.address.port, clusterKey: key });
    return { backend: 'embedded', ...storeConfig.address, served: false };
  }

  /**
   * Binds a process hosted inside this daemon (a coroutine service), claiming its endpoint in the
   * directory first, so two nodes never hold one slot. Client processes bind through the same path.
   */
  bind(dcid: number, opts: { slot?: number; name?: string } = {}): Promise<Process> {
    if (this.reconciler === undefined) return Promise.reject(new DvsError('EDVSDVSINIT', 'the daemon is not started'));
    return this.reconciler.bind(dcid, opts);
  }

  /** Resolves once this node's kernel runs `dcid` (the directory's DC definition reached it). */
  waitForDc(dcid: number, timeoutMs = 10_000): Promise<void> {
    if (this.reconciler === undefined) return Promise.reject(new DvsError('EDVSDVSINIT', 'the daemon is not started'));
    return this.reconciler.whenDc(dcid, timeoutMs);
  }

  /** The OS programs this daemon runs (start, retire, stop; which run bound an endpoint). */
  get supervisor(): Supervisor {
    if (this.supervisorOf === undefined) throw new DvsError('EDVSDVSINIT', 'the daemon is not started');
    return this.supervisorOf;
  }

  /** The coordination store this daemon uses (its call counters show what reached the store). */
  get coordinationStore(): CoordinationStore {
    return this.store;
  }

  /** The cluster directory this daemon follows (for DC management by hosted tools and tests). */
  get clusterDirectory(): Directory {
    return this.directory;
  }

  /** The node's own view: its registration, links, process socket and store counters. */
  diagnostics(): Record<string, unknown> {
    return {
      ...(this.reconciler === undefined ? {} : this.reconciler.status()),
      kernel: { ...this.kernel.stats },
      links: this.links.stats(),
      ...(this.procServer === undefined ? {} : { procServer: { ...this.procServer.stats, connections: this.procServer.connectionCount } }),
      ...(this.storeServer === undefined ? {} : { store: { ...this.storeServer.stats } }),
    };
  }

  private onPeerState(peer: number, state: 'up' | 'suspect' | 'down', incarnation?: number): void {
    this.log.info({ peer, state, incarnation }, 'peer state');
    DIAGNOSTICS.peer.publish({ node: this.config.nodeId, peer, state, ...(incarnation === undefined ? {} : { incarnation }) });
    if (state === 'down') {
      this.kernel.nodeDown(peer);
      this.reconciler?.peerDown(peer);
      this.services?.nodeDown(peer);
    } else if (state === 'up') {
      this.kernel.nodeUp(peer);
    }
  }

  /** Drains and stops: no new clients, local endpoints unbound (peers told), node deregistered, links closed. */
  stop(): Promise<void> {
    this.stopping ??= this.stopSubsystems();
    return this.stopping;
  }

  private async stopSubsystems(): Promise<void> {
    const { log } = this;
    // Without the lock nothing here is ours: the files in the directory belong to the daemon holding it.
    if (this.lockFile === undefined) return;
    log.info('stopping');
    // VOS servers first (they would be started again), then programs: they are told to end while the socket still serves their last calls.
    await this.vos?.stop().catch((err: unknown) => log.warn({ err }, 'stopping VOS servers'));
    await this.supervisorOf?.stopAll().catch((err: unknown) => log.warn({ err }, 'stopping programs'));
    await this.procServer?.close().catch((err: unknown) => log.warn({ err }, 'process server close'));
    await this.instances?.stop().catch((err: unknown) => log.warn({ err }, 'stopping instances'));
    await this.services?.stop().catch((err: unknown) => log.warn({ err }, 'services stop'));
    for (const dc of this.kernel.listDcs()) {
      for (const p of this.kernel.procs(dc.dcid)) {
        if (p.kind === 'local') {
          try {
            this.kernel.unbind(dc.dcid, p.endpoint);
          } catch {
            // already gone
          }
        }
      }
    }
    await this.reconciler?.stop().catch(() => undefined);
    if (this.directory !== undefined) await this.directory.close().catch(() => undefined);
    this.kernel.shutdown();
    await this.links.close().catch(() => undefined);
    await this.storeServer?.close().catch(() => undefined);
    await this.store?.close().catch(() => undefined);
    await rm(nodePaths(this.config.dataDir).runtime, { force: true });
    if (this.lockFile !== undefined) await unlockDataDir(this.lockFile).catch(() => undefined);
    log.info('stopped');
  }
}
