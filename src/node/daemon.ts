/**
 * dvsd: one node of a DVS cluster. Hosts a kernel, links it to its peers, keeps it in step with the
 * cluster directory (DCs, remote endpoints, peers) and serves local processes on a Unix socket.
 * Subsystems start in order (store, links, directory, process server) and stop in reverse.
 */
import path from 'node:path';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
// Not the cluster barrel: it re-exports the etcd backend, whose gRPC stack costs every daemon
// about 0.3 s of start-up and 25 MB; that backend is loaded only when configured.
import { Directory, type DcRecord, type EndpointRecord } from '../cluster/directory.js';
import { MemoryStore } from '../cluster/memory-store.js';
import type { CoordinationStore } from '../cluster/store.js';
import { StoreClient } from '../cluster/store-client.js';
import { StoreServer } from '../cluster/store-server.js';
import { DvsError, isDvsError } from '../ipc/errors.js';
import { Kernel, type Process } from '../kernel/index.js';
import { systemClock } from '../runtime/system-clock.js';
import { LinkManager, type LinkTlsOptions, type PeerAddress } from '../transport/link-manager.js';
import { nodePaths, type NodeConfig, type TlsConfig } from './config.js';
import { lockDataDir, unlockDataDir } from './data-dir-lock.js';
import { ProcServer } from './proc-server.js';
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

async function readClusterKey(file: string): Promise<Buffer> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new DvsError('EDVSBADFILE', `cannot read cluster key ${file}: ${(err as Error).message}`);
  }
  if (!/^[0-9a-fA-F]{32,}$/.test(text) || text.length % 2 !== 0) throw new DvsError('EDVSBADVALUE', `cluster key in ${file} must be at least 16 bytes of hex`);
  return Buffer.from(text, 'hex');
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
  private procServer!: ProcServer;
  private runtime!: NodeRuntimeInfo;
  /** The data directory's lock file, once taken. */
  private lockFile: string | undefined;
  private linkAddress!: { host: string; port: number };
  private peers = new Map<number, PeerAddress>();
  private stopping: Promise<void> | undefined;
  private readonly unsubscribe: (() => void)[] = [];

  private constructor(config: NodeConfig, clusterKey: Buffer, tls: LinkTlsOptions | undefined, opts: DaemonOptions) {
    this.config = config;
    this.log = opts.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId } });
    this.incarnation = Date.now();
    this.links = new LinkManager({
      nodeId: config.nodeId,
      incarnation: this.incarnation,
      clusterKey,
      ...(tls === undefined ? {} : { tls }),
      listen: config.listen,
      timing: config.timing,
      ...(config.compressMinBytes === undefined ? {} : { compressMinBytes: config.compressMinBytes }),
      logger: this.log.child({ sub: 'link' }),
      onFrame: (from, frame) => this.kernel.receiveFrame(from, frame),
      onPeerState: (node, state, incarnation) => this.onPeerState(node, state, incarnation),
    });
    this.kernel = new Kernel({
      nodeId: config.nodeId,
      clock: systemClock,
      transport: this.links,
      observer: {
        unbound: (dcid, endpoint) => {
          this.directory.releaseEndpoint(dcid, endpoint).catch((err: unknown) => this.log.warn({ err, dcid, endpoint }, 'could not release endpoint'));
        },
      },
    });
  }

  /** Starts every subsystem; resolves once the node is registered and serving. */
  static async start(config: NodeConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    const key = await readClusterKey(config.clusterKeyFile);
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
    const storeConfig = config.store;
    let storeInfo: NodeRuntimeInfo['store'];
    if (storeConfig.backend === 'etcd') {
      const { EtcdStore } = await import('../cluster/etcd-store.js');
      const etcd = new EtcdStore({ endpoints: storeConfig.endpoints });
      this.store = etcd;
      await etcd.revision(); // fail fast when no member answers
      storeInfo = { backend: 'etcd', endpoints: storeConfig.endpoints, served: false };
    } else if (storeConfig.serve) {
      // Durable: DC definitions, generations and revisions survive a restart of this node.
      const storeDir = path.join(config.dataDir, 'store');
      await mkdir(storeDir, { recursive: true, mode: 0o700 });
      const memory = MemoryStore.open(storeDir);
      if (memory.truncatedOnOpen > 0) log.warn({ bytes: memory.truncatedOnOpen }, 'cut a torn tail off the store log');
      this.storeServer = new StoreServer({ clusterKey: key, store: memory, host: storeConfig.address.host, port: storeConfig.address.port });
      const address = await this.storeServer.listen();
      this.store = memory;
      storeInfo = { backend: 'embedded', ...address, served: true };
      log.info({ store: address, storeId: memory.storeId, revision: memory.revision }, 'serving the embedded store');
    } else {
      this.store = await StoreClient.connect({ host: storeConfig.address.host, port: storeConfig.address.port, clusterKey: key });
      storeInfo = { backend: 'embedded', ...storeConfig.address, served: false };
    }

    // 2. Links to peers.
    const link = await this.links.start();

    // 3. The directory, and the kernel kept in step with it.
    this.directory = new Directory(this.store);
    // Listeners first: start() announces what already exists as events.
    this.unsubscribe.push(
      this.directory.on('node', () => this.syncPeers()),
      this.directory.on('dc', (e) => this.syncDc(e.dc.dcid)),
      this.directory.on('endpoint', (e) => this.onEndpoint(e.type, e.endpoint, e.previous)),
      this.directory.on('leaseLost', (e) => this.onLeaseLost(e.error)),
      this.directory.on('error', (err) => log.warn({ err }, 'directory error')),
    );
    await this.directory.start();

    // 4. The process socket.
    let token: string;
    try {
      token = await readTokenFile(paths.token, true);
    } catch {
      token = await createTokenFile(paths.token);
    }
    this.procServer = new ProcServer({
      kernel: this.kernel,
      socketPath: paths.socket,
      token,
      logger: log.child({ sub: 'proc' }),
      bind: (dcid, opts) => this.bindLocal(dcid, opts),
      // A remote call past its timeout may wait until the far node is declared down.
      settleMs: config.timing.deadMs,
    });
    await this.procServer.start();

    this.linkAddress = link;
    await this.register();
    this.syncPeers();
    for (const dc of this.directory.dcs()) this.syncDc(dc.dcid);

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

  private register(): Promise<unknown> {
    const paths = nodePaths(this.config.dataDir);
    return this.directory.registerNode(
      { nodeId: this.config.nodeId, host: this.linkAddress.host, port: this.linkAddress.port, meta: { socket: paths.socket, pid: process.pid } },
      Math.max(this.config.timing.deadMs, 1000),
      { replace: true },
    );
  }

  /** The store dropped our lease (a long pause, a missed keep-alive): the cluster dropped our endpoints. */
  private onLeaseLost(error: DvsError): void {
    if (this.stopping !== undefined) return;
    this.log.error({ err: error }, 'node lease lost; registering again');
    this.reRegister().catch((err: unknown) => this.log.error({ err }, 'could not register again'));
  }

  /**
   * Registers anew and restores the endpoints this node still runs, so a lease lost to a store
   * hiccup does not take a healthy node's processes away. An endpoint whose slot was taken
   * meanwhile is unbound here: the directory's newer claim wins (fencing).
   */
  private async reRegister(): Promise<void> {
    await this.register();
    for (const dc of this.kernel.listDcs()) {
      for (const p of this.kernel.procs(dc.dcid)) {
        if (p.kind !== 'local') continue;
        try {
          await this.directory.restoreEndpoint(dc.dcid, p.endpoint, this.config.nodeId, p.name);
        } catch (err) {
          this.log.warn({ err, dcid: dc.dcid, endpoint: p.endpoint }, 'endpoint could not be restored; unbinding it');
          try {
            this.kernel.unbind(dc.dcid, p.endpoint);
          } catch {
            // already gone
          }
        }
      }
    }
  }

  /**
   * Binds a process hosted inside this daemon (a coroutine service), claiming its endpoint in the
   * directory first, so two nodes never hold one slot. Client processes bind through the same path.
   */
  bind(dcid: number, opts: { slot?: number; name?: string } = {}): Promise<Process> {
    return this.bindLocal(dcid, opts);
  }

  /** Resolves once this node's kernel runs `dcid` (the directory's DC definition reached it). */
  async waitForDc(dcid: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.kernel.listDcs().some((d) => d.dcid === dcid)) {
      if (Date.now() > deadline) throw new DvsError('EDVSTIMEDOUT', `DC ${dcid} did not reach node ${this.config.nodeId}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The coordination store this daemon uses (its call counters show what reached the store). */
  get coordinationStore(): CoordinationStore {
    return this.store;
  }

  /** The cluster directory this daemon follows (for DC management by hosted tools and tests). */
  get clusterDirectory(): Directory {
    return this.directory;
  }

  private async bindLocal(dcid: number, opts: { slot?: number; name?: string }): Promise<Process> {
    if (this.directory.dc(dcid)?.nodes.includes(this.config.nodeId) !== true) {
      throw new DvsError('EDVSBADDCID', `DC ${dcid} does not include node ${this.config.nodeId}`);
    }
    const endpoint = await this.directory.claimEndpoint(dcid, this.config.nodeId, { ...(opts.slot === undefined ? {} : { slot: opts.slot }), ...(opts.name === undefined ? {} : { name: opts.name }) });
    try {
      return this.kernel.bind(dcid, { endpoint, ...(opts.name === undefined ? {} : { name: opts.name }) });
    } catch (err) {
      await this.directory.releaseEndpoint(dcid, endpoint).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Peers are the nodes the directory lists, plus those it stopped listing while their link is still
   * alive: a lease lost to a store hiccup must not cut a healthy link; the link's own heartbeats
   * decide when such a node is dead, and the next sync then lets it go.
   */
  private syncPeers(): void {
    const me = this.config.nodeId;
    const next = new Map<number, PeerAddress>();
    for (const n of this.directory.nodes()) if (n.nodeId !== me) next.set(n.nodeId, { nodeId: n.nodeId, host: n.host, port: n.port });
    for (const [id, addr] of this.peers) {
      const state = this.links.peerState(id)?.state;
      if (!next.has(id) && (state === 'up' || state === 'suspect')) next.set(id, addr);
    }
    this.peers = next;
    this.links.setPeers([...next.values()]);
  }

  private onPeerState(node: number, state: 'up' | 'suspect' | 'down', incarnation?: number): void {
    this.log.info({ peer: node, state, incarnation }, 'peer state');
    if (state === 'down') {
      this.kernel.nodeDown(node);
      // A peer kept only because its link was alive goes once the link says it is dead.
      if (this.peers.has(node) && this.directory.node(node) === undefined) queueMicrotask(() => this.syncPeers());
    } else if (state === 'up') {
      this.kernel.nodeUp(node);
    }
  }

  /** Makes the kernel's view of one DC match the directory: create, membership, destroy, descriptors. */
  private syncDc(dcid: number): void {
    const me = this.config.nodeId;
    const record: DcRecord | undefined = this.directory.dc(dcid);
    const running = this.kernel.listDcs().find((d) => d.dcid === dcid);
    try {
      if (record === undefined || !record.nodes.includes(me)) {
        if (running !== undefined) {
          this.kernel.destroyDc(dcid);
          this.log.info({ dcid }, 'left DC');
        }
        return;
      }
      if (running === undefined) {
        this.kernel.createDc({ dcid, name: record.name, nodes: [...record.nodes], limits: record.limits });
        this.log.info({ dcid, nodes: record.nodes }, 'joined DC');
      } else {
        for (const n of record.nodes) if (!running.nodes.includes(n)) this.kernel.addNode(dcid, n);
        for (const n of running.nodes) if (!record.nodes.includes(n)) this.kernel.removeNode(dcid, n);
      }
      for (const ep of this.directory.endpoints(dcid)) this.onEndpoint('bound', ep, undefined);
    } catch (err) {
      this.log.error({ err, dcid }, 'could not apply DC change');
    }
  }

  /** Keeps remote descriptors in step with the directory (the directory cache of the kernel). */
  private onEndpoint(type: 'bound' | 'unbound', ep: EndpointRecord, previous: EndpointRecord | undefined): void {
    if (ep.node === this.config.nodeId || !this.kernel.listDcs().some((d) => d.dcid === ep.dcid)) return;
    try {
      if (type === 'bound') {
        if (previous !== undefined && previous.endpoint !== ep.endpoint && previous.node !== this.config.nodeId) this.dropRemote(previous);
        this.kernel.bindRemote(ep.dcid, ep.endpoint, ep.node, ep.name);
      } else if (this.links.peerState(ep.node)?.state !== 'up') {
        this.dropRemote(ep);
      }
      // An endpoint whose owner is still linked and up stays: a real unbind reaches us from its kernel,
      // and a deletion that only follows a lost lease must not cut traffic while the owner restores it.
    } catch (err) {
      if (!isDvsError(err, 'EDVSSLOTUSED') && !isDvsError(err, 'EDVSNODCNODE')) this.log.warn({ err, endpoint: ep }, 'could not apply endpoint change');
    }
  }

  private dropRemote(ep: EndpointRecord): void {
    const row = this.kernel.procs(ep.dcid).find((p) => p.slot === ep.slot);
    if (row?.kind === 'remote' && row.endpoint === ep.endpoint) this.kernel.unbind(ep.dcid, ep.endpoint);
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
    await this.procServer?.close().catch((err: unknown) => log.warn({ err }, 'process server close'));
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
    if (this.directory !== undefined) {
      await this.directory.flush().catch(() => undefined);
      await this.directory.unregisterNode(this.config.nodeId).catch(() => undefined);
      for (const off of this.unsubscribe) off();
      await this.directory.close().catch(() => undefined);
    }
    this.kernel.shutdown();
    await this.links.close().catch(() => undefined);
    await this.storeServer?.close().catch(() => undefined);
    await this.store?.close().catch(() => undefined);
    await rm(nodePaths(this.config.dataDir).runtime, { force: true });
    if (this.lockFile !== undefined) await unlockDataDir(this.lockFile).catch(() => undefined);
    log.info('stopped');
  }
}
