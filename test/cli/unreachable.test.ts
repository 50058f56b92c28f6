/**
 * The `dvs` command (real OS processes) when what it needs cannot be reached: every command that
 * uses the store waits for it up to `--timeout`, then says what it could not reach (which store, at
 * which address, the last error) on stderr and exits with EXIT.unreachable; a store that comes up
 * before the timeout lets the command succeed. Also the other exit codes (usage, refused key).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readClusterKeyFile, readRuntime, writeClusterKey, type ClusterFile } from '../../src/cli/cluster-files.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { Directory } from '../../src/cluster/directory.js';
import { StoreServer } from '../../src/cluster/store-server.js';
import { nodePaths } from '../../src/node/config.js';
import { createTokenFile } from '../../src/transport/proc-token.js';
import { eventually } from '../node/helpers.js';
import { CLI_MAIN, runCli, type CliResult } from './helpers.js';

const TIMEOUT_MS = 1500;

let dir: string;
let keyFile: string;
const servers: (Server | StoreServer)[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-cli-unreachable-'));
  keyFile = path.join(dir, 'cluster.key');
  await writeClusterKey(keyFile);
});

afterEach(async () => {
  for (const f of cleanups.splice(0)) await f();
  for (const s of servers.splice(0)) await closeServer(s);
  await rm(dir, { recursive: true, force: true });
});

function closeServer(s: Server | StoreServer): Promise<void> {
  if (s instanceof StoreServer) return s.close();
  return new Promise((resolve) => s.close(() => resolve()));
}

/** A port with nothing listening on it (taken from the kernel, then let go). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A TCP server on `port` that counts connection attempts and cuts each at once, as a store that is not up yet would. */
async function countingRefuser(port: number): Promise<{ server: Server; attempts: () => number }> {
  let attempts = 0;
  const server = createServer((socket) => {
    attempts++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  servers.push(server);
  return { server, attempts: () => attempts };
}

async function writeCluster(port: number, nodes: ClusterFile['nodes'] = []): Promise<void> {
  const cluster: ClusterFile = { dir, keyFile, store: { backend: 'embedded', host: '127.0.0.1', port }, nodes };
  await writeFile(path.join(dir, 'cluster.json'), JSON.stringify(cluster));
}

async function writeNodeConfig(nodeId: number, port: number): Promise<string> {
  const file = path.join(dir, `node-${nodeId}.json`);
  const config = { nodeId, listen: '127.0.0.1:0', dataDir: path.join(dir, `node-${nodeId}`), clusterKeyFile: keyFile, store: { backend: 'embedded', serve: false, address: `127.0.0.1:${port}` }, logLevel: 'warn' };
  await writeFile(file, JSON.stringify(config));
  return file;
}

function expectUnreachable(r: CliResult, what: RegExp, port: number): void {
  expect(r.code, r.stderr).toBe(EXIT.unreachable);
  expect(r.stderr).toMatch(what);
  expect(r.stderr).toContain(`at 127.0.0.1:${port} within ${TIMEOUT_MS} ms (last error: connect ECONNREFUSED 127.0.0.1:${port})`);
  // It waited for its timeout, and not for ever (the bound is generous: the machine may be loaded).
  expect(r.ms).toBeGreaterThanOrEqual(TIMEOUT_MS);
  expect(r.ms).toBeLessThan(TIMEOUT_MS + 20_000);
}

describe('a store with nothing listening', () => {
  it('every store command waits for its timeout, then names the store, its address and the last error', async () => {
    const port = await freePort();
    await writeCluster(port);
    const t = ['--timeout', String(TIMEOUT_MS), '--dir', dir];
    const commands = [['status', ...t], ['status', '--json', ...t], ['dc', 'ls', ...t], ['dc', 'create', '1', '--nodes', '0', ...t], ['dc', 'rm', '1', ...t], ['dc', 'add-node', '1', '2', ...t], ['dc', 'rm-node', '1', '2', ...t], ['ps', ...t]];
    const results = await Promise.all(commands.map((args) => runCli(args)));
    for (const [i, r] of results.entries()) {
      const args = commands[i]!;
      // status still prints what the nodes report of themselves (this cluster file lists none); the others print nothing.
      if (args.includes('--json')) expect(JSON.parse(r.stdout)).toEqual({ store: null, nodes: [] });
      else if (args[0] === 'status') expect(r.stdout).toMatch(/^store unreachable: what each node reports\n/);
      else expect(r.stdout, args.join(' ')).toBe('');
      expectUnreachable(r, new RegExp(`^dvs: EDVSNOTCONN: cannot reach the embedded store of the cluster in ${dir.replace(/[.]/g, '\\.')}`), port);
    }
  }, 60_000);

  it('dvs node start waits for its timeout too, and leaves no data directory behind', async () => {
    const port = await freePort();
    const config = await writeNodeConfig(1, port);
    const r = await runCli(['node', 'start', '--config', config, '--timeout', String(TIMEOUT_MS)]);
    expectUnreachable(r, /^dvs: EDVSNOTCONN: cannot reach the embedded store of node 1 /, port);
    expect(existsSync(path.join(dir, 'node-1'))).toBe(false);
  }, 30_000);
});

describe('a store that comes up before the timeout', () => {
  it('dvs dc create retries until it is there, then succeeds', async () => {
    const port = await freePort();
    await writeCluster(port);
    const refuser = await countingRefuser(port);
    const cli = runCli(['dc', 'create', '4', '--nodes', '0,1', '--name', 'late', '--json', '--timeout', '30000', '--dir', dir]);
    // The command is waiting: it has already tried, and been cut off, twice.
    await eventually(() => (refuser.attempts() >= 2 ? true : undefined), 20_000, 10);
    await closeServer(refuser.server);
    const store = new StoreServer({ clusterKey: await readClusterKeyFile(keyFile), port });
    servers.push(store);
    await store.listen();
    const r = await cli;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(EXIT.ok);
    expect(JSON.parse(r.stdout)).toMatchObject({ dcid: 4, name: 'late', nodes: [0, 1] });
    const d = new Directory(store.store);
    await d.start();
    expect(d.dcs().map((dc) => dc.dcid)).toEqual([4]);
    await d.close();
  }, 60_000);

  it('dvs node start waits for the store, then starts and registers', async () => {
    const port = await freePort();
    const config = await writeNodeConfig(1, port);
    const refuser = await countingRefuser(port);
    const child = spawn(process.execPath, [CLI_MAIN, 'node', 'start', '--config', config, '--timeout', '30000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    await eventually(() => (refuser.attempts() >= 2 ? true : undefined), 20_000, 10);
    expect(child.exitCode).toBeNull();
    await closeServer(refuser.server);
    const store = new StoreServer({ clusterKey: await readClusterKeyFile(keyFile), port });
    servers.push(store);
    await store.listen();
    const runtime = await eventually(() => readRuntime(path.join(dir, 'node-1')), 20_000);
    expect(runtime.pid).toBe(child.pid);
    const d = new Directory(store.store);
    await d.start();
    expect(d.nodes().map((n) => n.nodeId)).toEqual([1]);
    await d.close();
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
  }, 60_000);
});

describe('other outcomes', () => {
  it('usage errors exit with EXIT.usage, help with EXIT.ok', async () => {
    const [badArg, unknown, help] = await Promise.all([runCli(['dc', 'create', 'x', '--nodes', '0']), runCli(['teleport']), runCli(['--help'])]);
    expect(badArg.code).toBe(EXIT.usage);
    expect(badArg.stderr).toMatch(/'x' is invalid for argument 'dcid'/);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.stderr).toMatch(/unknown command 'teleport'/);
    expect(help.code).toBe(EXIT.ok);
    expect(help.stdout).toMatch(/Usage: dvs/);
  });

  it('a store that refuses the cluster key is an error (EXIT.error), not unreachable, and is not retried', async () => {
    const store = new StoreServer({ clusterKey: 'another-cluster-key-entirely-0000' });
    servers.push(store);
    const { port } = await store.listen();
    await writeCluster(port);
    const r = await runCli(['dc', 'ls', '--timeout', '20000', '--dir', dir]);
    expect(r.code).toBe(EXIT.error);
    expect(r.stderr).toMatch(/^dvs: EDVSACCES: /);
    expect(r.ms).toBeLessThan(15_000);
  });

  it('dvs ps names a live daemon that does not answer, prints the rows it has, and exits with EXIT.unreachable', async () => {
    const store = new StoreServer({ clusterKey: await readClusterKeyFile(keyFile) });
    servers.push(store);
    const { port } = await store.listen();
    // Node 5's "daemon": a live pid (this process) and a socket that accepts and never answers.
    const dataDir = path.join(dir, 'node-5');
    const paths = nodePaths(dataDir);
    await mkdir(dataDir, { recursive: true });
    await createTokenFile(paths.token);
    const held: Socket[] = [];
    const silent = createServer((s) => held.push(s));
    await new Promise<void>((resolve) => silent.listen(paths.socket, resolve));
    servers.push(silent);
    cleanups.push(() => held.forEach((s) => s.destroy()));
    await writeFile(paths.runtime, JSON.stringify({ nodeId: 5, pid: process.pid, socket: paths.socket, token: paths.token }));
    await writeCluster(port, [{ nodeId: 5, dataDir, configFile: path.join(dataDir, 'config.json'), pid: process.pid }]);
    const d = new Directory(store.store);
    await d.start();
    await d.createDc({ dcid: 2, nodes: [5] });
    await d.close();
    const r = await runCli(['ps', '--json', '--timeout', String(TIMEOUT_MS), '--dir', dir]);
    expect(r.code).toBe(EXIT.unreachable);
    expect(JSON.parse(r.stdout)).toEqual({ procs: [], runs: [] });
    expect(r.stderr).toMatch(new RegExp(`^dvs: node 5: EDVSNOTCONN: cannot reach the daemon of node 5 \\(pid ${process.pid}\\) at ${paths.socket.replace(/[.]/g, '\\.')} within ${TIMEOUT_MS} ms`));
  }, 30_000);
});
