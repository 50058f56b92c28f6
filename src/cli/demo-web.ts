/**
 * `dvs demo`, README's first command: boots a local 3-node cluster, a DC across it and the web VOS
 * (NWEB and FS on node 0, RDISK on node 1 over a MINIX image made by mkfs.minix), loads a sample
 * site into the FS, prints the address, and serves until Ctrl-C, when it stops everything it
 * started. `shape` chooses where the servers run: one unikernel host on node 0 (default), every
 * server its own process, or mixed (FS as its own process on node 2, the rest in the unikernel).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type DvsClient } from '../client/client.js';
import { Vos } from '../client/vos.js';
import { DvsError } from '../ipc/errors.js';
import { createDc } from './admin.js';
import { clusterDown, clusterUp } from './cluster.js';
import { readRuntime } from './cluster-files.js';
import { demoSite } from './demo-site.js';
import { fsMkfs } from './fs-command.js';
import { formatVosView, vosDown, vosUp } from './vos-command.js';

export type DemoShape = 'unikernel' | 'multiserver' | 'mixed';
export const DEMO_SHAPES: readonly DemoShape[] = ['unikernel', 'multiserver', 'mixed'];

const DC = 1;
const IMAGE = 'demo-disk.img';
const IMAGE_MB = 64;

/** The VOS spec of the web demo in one shape; `port` is NWEB's. */
export function webDemoSpec(shape: DemoShape, port: number): object {
  const uni = (name: string, node: number, options?: object): object => ({ name, node, shape: 'unikernel', host: 'web', ...(options === undefined ? {} : { options }) });
  const own = (name: string, node: number, options?: object): object => ({ name, node, shape: 'multiserver', ...(options === undefined ? {} : { options }) });
  const nweb = { port, address: '127.0.0.1' };
  const rdisk = own('rdisk', 1, { image: IMAGE });
  const systask = { name: 'systask', node: 'each' };
  switch (shape) {
    case 'unikernel':
      return { dc: DC, servers: [uni('pm', 0), uni('ds', 0), uni('fs', 0), uni('nweb', 0, nweb), rdisk, systask] };
    case 'multiserver':
      return { dc: DC, servers: [own('pm', 0), own('ds', 0), own('fs', 0), own('nweb', 0, nweb), rdisk, systask] };
    case 'mixed':
      return { dc: DC, servers: [uni('pm', 0), uni('ds', 0), own('fs', 2), uni('nweb', 0, nweb), rdisk, systask] };
  }
}

/** A free TCP port on loopback: `preferred` when it is free. */
export async function freePort(preferred?: number): Promise<number> {
  const tryPort = (p: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(undefined));
      s.listen(p, '127.0.0.1', () => {
        const got = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(got));
      });
    });
  if (preferred !== undefined) {
    const p = await tryPort(preferred);
    if (p !== undefined) return p;
  }
  const p = await tryPort(0);
  if (p === undefined) throw new DvsError('EDVSADDRINUSE', 'no free TCP port on 127.0.0.1');
  return p;
}

export interface WebDemoOptions {
  readonly shape: DemoShape;
  /** NWEB's port: this one when free, else any. */
  readonly port?: number;
  readonly log: (line: string) => void;
  /** Resolves when the demo should stop (default: SIGINT or SIGTERM). */
  readonly until?: (url: string) => Promise<void>;
}

function signalled(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

export async function runWebDemo(opts: WebDemoOptions): Promise<void> {
  const { log } = opts;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-web-demo-'));
  let client: DvsClient | undefined;
  let vosBooted = false;
  try {
    log('booting three dvsd processes on loopback...');
    const cluster = await clusterUp({ nodes: 3, dir, logLevel: 'warn', log: (l) => log(`  ${l}`) });
    await createDc(dir, { dcid: DC, name: 'web', nodes: [0, 1, 2] });
    const diskNode = cluster.nodes.find((n) => n.nodeId === 1);
    if (diskNode === undefined) throw new DvsError('EDVSNOENT', 'the cluster has no node 1');
    log(`making a ${IMAGE_MB} MiB MINIX v3 image for RDISK on node 1 (mkfs.minix -3)`);
    await fsMkfs(path.join(diskNode.dataDir, IMAGE), IMAGE_MB);
    const port = await freePort(opts.port ?? 8080);
    const specFile = path.join(dir, 'web-vos.json');
    await writeFile(specFile, JSON.stringify(webDemoSpec(opts.shape, port), null, 2));
    log(`booting the web VOS, ${opts.shape} shape...`);
    const view = await vosUp(dir, specFile, { timeoutMs: 60_000 });
    vosBooted = true;
    log(formatVosView(view).split('\n').map((l) => `  ${l}`).join('\n'));
    const r2 = readRuntime(cluster.nodes.find((n) => n.nodeId === 2)?.dataDir ?? '');
    if (r2 === undefined) throw new DvsError('EDVSNOENT', 'node 2 is not running');
    client = await connect({ socketPath: r2.socket, tokenPath: r2.token, name: 'demo-loader' });
    const vos = await Vos.open(client, { dcid: DC, name: 'demo-loader' });
    const site = demoSite();
    let bytes = 0;
    for (const [p, content] of site) {
      await vos.fs.mkdir(path.posix.dirname(p), { recursive: true });
      await vos.fs.writeFile(p, content);
      bytes += typeof content === 'string' ? Buffer.byteLength(content) : content.length;
    }
    await vos.fs.sync();
    await vos.close();
    log(`loaded the sample site from node 2 into the FS: ${site.size} files, ${bytes} bytes`);
    const url = `http://127.0.0.1:${port}/`;
    log(`\nthe web VOS serves ${url}\n  try: curl -i ${url}   ·   dvs fs ls / --dc ${DC} --dir ${dir}\n  Ctrl-C stops everything`);
    await (opts.until ?? signalled)(url);
    log('\nstopping...');
  } finally {
    await client?.close().catch(() => undefined);
    if (vosBooted) await vosDown(dir, DC, { timeoutMs: 30_000 }).catch(() => undefined);
    const stopped = await clusterDown(dir).catch(() => 0);
    log(`cluster down (${stopped} daemons stopped)`);
    await rm(dir, { recursive: true, force: true });
  }
}
