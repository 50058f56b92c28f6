/**
 * `dvs status` shows each node's own view beside the store's: the registration state and since its
 * daemon reports in the `info` result's `node` field ('-' when it reports none or a malformed one),
 * and with --json the whole `node` object. Daemons reporting chosen views are small process-protocol
 * servers on real Unix sockets; the store is a real StoreServer; the CLI runs as an OS process. A
 * real one-node cluster checks that the text and JSON agree with whatever today's daemon reports.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeSelfView } from '../../src/cli/admin.js';
import { readClusterKeyFile, writeClusterKey, type ClusterFile } from '../../src/cli/cluster-files.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { parseNodeView } from '../../src/cli/node-view.js';
import { formatSelfViews } from '../../src/cli/status-table.js';
import { Directory } from '../../src/cluster/directory.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import { nodePaths } from '../../src/node/config.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/framing.js';
import { createTokenFile } from '../../src/transport/proc-token.js';
import { PROC_PROTOCOL_VERSION } from '../../src/transport/proc-protocol.js';
import { startCluster } from '../node/helpers.js';
import { runCli } from './helpers.js';

const SINCE = '2026-01-02T03:04:05.000Z';
const REGISTERED = { registration: { state: 'registered', since: SINCE, attempts: 1 }, links: { peers: 2, framesOut: 42 }, store: { connected: true } };

describe('parseNodeView', () => {
  it('takes a well-formed registration, and the whole node object as it came', () => {
    expect(parseNodeView({ nodeId: 1, node: REGISTERED })).toEqual({ registration: REGISTERED.registration, node: REGISTERED });
    const registering = { registration: { state: 'registering', since: SINCE, attempts: 7, lastError: 'EDVSNOTCONN: store unreachable' } };
    expect(parseNodeView({ node: registering })?.registration).toEqual(registering.registration);
  });

  it('gives no view without a node object, and no registration when it is malformed', () => {
    for (const info of [undefined, null, 5, 'x', [], {}, { node: null }, { node: [1] }, { node: 'registered' }]) expect(parseNodeView(info), JSON.stringify(info)).toBeUndefined();
    const bad: unknown[] = [
      undefined,
      'registered',
      { state: 'gone', since: SINCE, attempts: 1 },
      { state: 'registered', since: 'yesterday', attempts: 1 },
      { state: 'registered', since: 5, attempts: 1 },
      { state: 'registered', since: SINCE, attempts: -1 },
      { state: 'registered', since: SINCE, attempts: 1.5 },
      { state: 'registered', since: SINCE },
      { state: 'registered', since: SINCE, attempts: 1, lastError: { code: 'X' } },
    ];
    for (const registration of bad) {
      const view = parseNodeView({ node: { registration, links: { up: 1 } } });
      expect(view, JSON.stringify(registration)).toEqual({ registration: undefined, node: { registration, links: { up: 1 } } });
    }
  });

  it('the store-less table shows state, since, attempts and the last error, or the reason a node gave nothing', () => {
    const nodes: NodeSelfView[] = [
      { nodeId: 0, pid: 10, alive: true, registration: { state: 'registering', since: SINCE, attempts: 3, lastError: 'store down' } },
      { nodeId: 1, pid: 11, alive: true, viewError: 'no answer' },
      { nodeId: 2, pid: 12, alive: false },
    ];
    const lines = formatSelfViews(nodes).split('\n');
    expect(lines[2]).toMatch(new RegExp(`^0 +10 +true +registering +${SINCE.replace(/\./g, '\\.')} +3 +store down$`));
    expect(lines[3]).toMatch(/^1 +11 +true +- +- +- +no answer$/);
    expect(lines[4]).toMatch(/^2 +12 +false +- +- +- +-$/);
  });
});

/** A daemon that answers hello and info (with `node` as given) on a real Unix socket, and nothing else. */
async function fakeDaemon(socketPath: string, node: unknown): Promise<Server> {
  const held: Socket[] = [];
  const server = createServer((socket) => {
    held.push(socket);
    const decoder = new FrameDecoder();
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk) as { id: number; op: string }[]) {
        const result =
          f.op === 'hello'
            ? { version: PROC_PROTOCOL_VERSION, maxFrameBytes: 1 << 20, maxCopyBytes: 1 << 20 }
            : f.op === 'info'
              ? { nodeId: 0, running: true, dcs: [], downNodes: [], ...(node === undefined ? {} : { node }) }
              : undefined;
        socket.write(encodeFrame(result === undefined ? { id: f.id, ok: false, error: { code: 'EDVSNOSYS', errno: -38, message: 'EDVSNOSYS: not here' } } : { id: f.id, ok: true, result }));
      }
    });
  });
  server.on('close', () => held.forEach((s) => s.destroy()));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return server;
}

describe('dvs status against nodes reporting their own view', () => {
  let dir: string;
  let keyFile: string;
  const servers: (Server | StoreServer)[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-cli-status-'));
    keyFile = path.join(dir, 'cluster.key');
    await writeClusterKey(keyFile);
  });

  afterEach(async () => {
    for (const f of cleanups.splice(0)) await f();
    for (const s of servers.splice(0)) {
      if (s instanceof StoreServer) await s.close();
      else await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    await rm(dir, { recursive: true, force: true });
  });

  /** Nodes 0..n-1 of a cluster file, each a fake daemon (alive: its pid is this process's) reporting views[i]. */
  async function writeNodes(storePort: number, views: unknown[]): Promise<void> {
    const nodes: ClusterFile['nodes'] = [];
    for (const [nodeId, view] of views.entries()) {
      const dataDir = path.join(dir, `node-${nodeId}`);
      const paths = nodePaths(dataDir);
      await mkdir(dataDir, { recursive: true });
      await createTokenFile(paths.token);
      servers.push(await fakeDaemon(paths.socket, view));
      await writeFile(paths.runtime, JSON.stringify({ nodeId, pid: process.pid, socket: paths.socket, token: paths.token }));
      nodes.push({ nodeId, dataDir, configFile: path.join(dataDir, 'config.json'), pid: process.pid });
    }
    const cluster: ClusterFile = { dir, keyFile, store: { backend: 'embedded', host: '127.0.0.1', port: storePort }, nodes };
    await writeFile(path.join(dir, 'cluster.json'), JSON.stringify(cluster));
  }

  const MALFORMED = { registration: { state: 'registered', since: 'soon', attempts: 1 }, procServer: { connections: 3 } };

  it('shows registration and since per node, or -, and the whole node object with --json', async () => {
    const store = new StoreServer({ clusterKey: await readClusterKeyFile(keyFile) });
    servers.push(store);
    const { port } = await store.listen();
    // Node 0 registered in the store (the registration lives while this directory does).
    const d = new Directory(store.store);
    cleanups.push(() => d.close());
    await d.registerNode({ nodeId: 0, host: '127.0.0.1', port: 7000 }, 60_000);
    await writeNodes(port, [REGISTERED, undefined, MALFORMED]);

    const text = await runCli(['status', '--dir', dir, '--timeout', '5000']);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(EXIT.ok);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^node +pid +alive +registered +incarnation +link +registration +since +dcs$/);
    expect(lines[2]).toMatch(new RegExp(`^0 +${process.pid} +true +true +\\d+ +127\\.0\\.0\\.1:7000 +registered +${SINCE.replace(/\./g, '\\.')}`));
    expect(lines[3]).toMatch(new RegExp(`^1 +${process.pid} +true +false +- +- +- +-`));
    expect(lines[4]).toMatch(new RegExp(`^2 +${process.pid} +true +false +- +- +- +-`));

    const json = await runCli(['status', '--json', '--dir', dir, '--timeout', '5000']);
    expect(json.code).toBe(EXIT.ok);
    const s = JSON.parse(json.stdout) as { nodes: Record<string, unknown>[] };
    expect(s.nodes[0]).toMatchObject({ nodeId: 0, registered: true, registration: REGISTERED.registration, node: REGISTERED });
    expect(s.nodes[1]).not.toHaveProperty('node');
    expect(s.nodes[1]).not.toHaveProperty('registration');
    expect(s.nodes[2]).toMatchObject({ nodeId: 2, node: MALFORMED });
    expect(s.nodes[2]).not.toHaveProperty('registration');
  }, 30_000);

  it('without the store, still shows what each node says, then fails as unreachable', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const registering = { registration: { state: 'registering', since: SINCE, attempts: 4, lastError: 'EDVSNOTCONN: store unreachable' } };
    await writeNodes(port, [registering, undefined]);

    const text = await runCli(['status', '--dir', dir, '--timeout', '1500']);
    expect(text.code).toBe(EXIT.unreachable);
    expect(text.stderr).toMatch(new RegExp(`^dvs: EDVSNOTCONN: cannot reach the embedded store of the cluster in .* at 127\\.0\\.0\\.1:${port} within 1500 ms`));
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('store unreachable: what each node reports');
    expect(lines[2]).toMatch(new RegExp(`^0 +${process.pid} +true +registering +${SINCE.replace(/\./g, '\\.')} +4 +EDVSNOTCONN: store unreachable$`));
    expect(lines[3]).toMatch(new RegExp(`^1 +${process.pid} +true +- +- +- +-$`));

    const json = await runCli(['status', '--json', '--dir', dir, '--timeout', '1500']);
    expect(json.code).toBe(EXIT.unreachable);
    expect(JSON.parse(json.stdout)).toMatchObject({ store: null, nodes: [{ nodeId: 0, registration: registering.registration, node: registering }, { nodeId: 1 }] });
  }, 30_000);
});

describe('dvs status against a real daemon', () => {
  it('agrees between text and JSON on what the node reports of itself', async () => {
    const tc = await startCluster(1);
    try {
      const [text, json] = await Promise.all([runCli(['status', '--dir', tc.dir]), runCli(['status', '--json', '--dir', tc.dir])]);
      expect(text.code).toBe(EXIT.ok);
      expect(json.code).toBe(EXIT.ok);
      const n0 = (JSON.parse(json.stdout) as { nodes: { nodeId: number; alive: boolean; registered: boolean; registration?: { state: string; since: string }; viewError?: string }[] }).nodes[0];
      expect(n0).toMatchObject({ nodeId: 0, alive: true, registered: true });
      expect(n0?.viewError).toBeUndefined();
      const row = text.stdout.split('\n')[2] ?? '';
      const cols = row.trim().split(/ +/);
      // registration and since are the 7th and 8th columns: the node's report, or '-' when it reports none.
      expect(cols.slice(6, 8)).toEqual(n0?.registration === undefined ? ['-', '-'] : [n0.registration.state, n0.registration.since]);
    } finally {
      await tc.stop();
    }
  }, 60_000);
});
