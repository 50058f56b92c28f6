/**
 * Suite `web`: NWEB, FS and RDISK on three real daemons, loaded with `wrk` (Debian's), beside Node's
 * own `http` serving the same files from local disk in one process (bench/baselines/static-server.ts),
 * all in the same run:
 * - requests/s for a 1 KiB file and MB/s for a 10 MiB file, NWEB unikernel (one host process on
 *   node 0 with FS, RDISK a process of node 0), multiserver (each server its own process on node 0),
 *   and unikernel with RDISK on node 1;
 * - `dvs cp` of a 100 MiB file into and out of the DC whose RDISK is remote, beside a bulk copyFrom
 *   of 100 MiB across the same daemons.
 *
 * `--scale` shrinks the durations and the copy size.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createDc } from '../../src/cli/admin.js';
import { clusterDown, clusterUp } from '../../src/cli/cluster.js';
import { readRuntime, type ClusterFile } from '../../src/cli/cluster-files.js';
import { freePort } from '../../src/cli/demo-web.js';
import { fsCopy, fsMkfs } from '../../src/cli/fs-command.js';
import { vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { Vos } from '../../src/client/vos.js';
import { removeOnExit } from '../etcd-process.js';
import { round, type BenchResult, type Suite } from '../harness.js';

const SUITE = 'web';
const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const STATIC_SERVER = path.join(HERE, '..', 'baselines', 'static-server.js');
const SMALL = 1024;
const BIG = 10 * 1024 * 1024;
const MiB = 1024 * 1024;

interface Setup {
  readonly label: string;
  readonly dc: number;
  readonly shape: 'unikernel' | 'multiserver';
  readonly rdiskNode: number;
}
const SETUPS: readonly Setup[] = [
  { label: 'unikernel', dc: 1, shape: 'unikernel', rdiskNode: 0 },
  { label: 'multiserver', dc: 2, shape: 'multiserver', rdiskNode: 0 },
  { label: 'unikernel, RDISK remote', dc: 3, shape: 'unikernel', rdiskNode: 1 },
];

function specOf(s: Setup, port: number): object {
  const server = (name: string, options?: object): object =>
    s.shape === 'unikernel' ? { name, node: 0, shape: 'unikernel', host: 'web', ...(options === undefined ? {} : { options }) } : { name, node: 0, ...(options === undefined ? {} : { options }) };
  return { dc: s.dc, servers: [server('fs'), server('nweb', { port }), { name: 'rdisk', node: s.rdiskNode, options: { image: `web-${s.dc}.img` } }] };
}

/** wrk's requests/s against `url`. */
async function wrk(url: string, connections: number, seconds: number): Promise<number> {
  const { stdout } = await run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, url], { timeout: (seconds + 30) * 1000 });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  if (m?.[1] === undefined) throw new Error(`wrk printed no Requests/sec:\n${stdout}`);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(stdout);
  if (errors !== null) throw new Error(`wrk saw errors against ${url}: ${errors[0]}`);
  return Number(m[1]);
}

async function startStaticServer(root: string): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [STATIC_SERVER, root], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the static server exited with ${code}`)));
  });
  return { port, child };
}

export const webSuite: Suite = {
  name: SUITE,
  description: 'NWEB requests/s and MB/s with wrk beside Node http from local disk; dvs cp with RDISK remote beside bulk copy',
  async run({ scale }): Promise<BenchResult[]> {
    const seconds = Math.max(2, Math.round(5 * scale));
    const cpBytes = Math.max(8 * MiB, Math.round(100 * MiB * scale));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dvs-bench-web-'));
    const forget = removeOnExit(dir);
    const clients: DvsClient[] = [];
    let baseline: ChildProcess | undefined;
    try {
      const cluster: ClusterFile = await clusterUp({ nodes: 3, dir, logLevel: process.env.DVS_BENCH_LOG ?? 'error' });
      const dataDir = (node: number): string => cluster.nodes.find((n) => n.nodeId === node)?.dataDir ?? '';
      const client = async (node: number): Promise<DvsClient> => {
        const r = readRuntime(dataDir(node));
        if (r === undefined) throw new Error(`node ${node} is not running`);
        const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'bench-web' });
        clients.push(c);
        return c;
      };
      const small = randomBytes(SMALL);
      const big = randomBytes(BIG);
      const site = path.join(dir, 'site');
      await mkdir(site);
      await writeFile(path.join(site, 'small.bin'), small);
      await writeFile(path.join(site, 'big.bin'), big);
      const ports = new Map<number, number>();
      for (const s of SETUPS) {
        await createDc(dir, { dcid: s.dc, name: `web${s.dc}`, nodes: [0, 1, 2] });
        await fsMkfs(path.join(dataDir(s.rdiskNode), `web-${s.dc}.img`), Math.max(160, Math.ceil((cpBytes * 2) / MiB) + 32));
        const port = await freePort();
        ports.set(s.dc, port);
        const file = path.join(dir, `web-${s.dc}.json`);
        await writeFile(file, JSON.stringify(specOf(s, port)));
        await vosUp(dir, file, { timeoutMs: 60_000 });
        const vos = await Vos.open(await client(2), { dcid: s.dc, name: 'bench-loader' });
        await vos.fs.writeFile('/small.bin', small);
        await vos.fs.writeFile('/big.bin', big);
        await vos.fs.sync();
        await vos.close();
      }
      const b = await startStaticServer(site);
      baseline = b.child;
      const base = `http://127.0.0.1:${b.port}`;
      const results: BenchResult[] = [];
      const note = { tool: 'wrk -t1', seconds, baselineIs: "Node's http serving the same file from local disk, one process" };
      for (const s of SETUPS) {
        const ours = `http://127.0.0.1:${ports.get(s.dc)}`;
        // Warm both (FS's cache, the page cache), then ours and the baseline back to back.
        await wrk(`${ours}/small.bin`, 4, 1);
        await wrk(`${base}/small.bin`, 4, 1);
        const rps = await wrk(`${ours}/small.bin`, 16, seconds);
        const baseRps = await wrk(`${base}/small.bin`, 16, seconds);
        results.push({ suite: SUITE, case: `NWEB ${s.label}: 1 KiB file`, value: round(rps), unit: 'req/s', baseline: round(baseRps), slowdown: round(baseRps / rps, 2), ...note, connections: 16 });
        await wrk(`${ours}/big.bin`, 2, 1);
        const mbs = ((await wrk(`${ours}/big.bin`, 4, seconds)) * BIG) / MiB;
        const baseMbs = ((await wrk(`${base}/big.bin`, 4, seconds)) * BIG) / MiB;
        results.push({ suite: SUITE, case: `NWEB ${s.label}: 10 MiB file`, value: round(mbs, 1), unit: 'MiB/s', baseline: round(baseMbs, 1), slowdown: round(baseMbs / mbs, 2), ...note, connections: 4 });
      }
      results.push(...(await copyCases(dir, client, cpBytes)));
      return results;
    } finally {
      baseline?.kill('SIGTERM');
      for (const c of clients) await c.close().catch(() => undefined);
      await clusterDown(dir).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      forget();
    }
  },
};

/** `dvs cp` into and out of DC 3 (RDISK on node 1, FS on node 0, the copy through node 2), beside a bulk copyFrom node 0 ← node 1. */
async function copyCases(dir: string, client: (node: number) => Promise<DvsClient>, bytes: number): Promise<BenchResult[]> {
  const dc = 3;
  const local = path.join(dir, 'cp.bin');
  await writeFile(local, randomBytes(bytes));
  const target = { dir, dcid: dc, node: 2 };
  const into = await fsCopy(target, local, 'dc:/cp.bin');
  const out = await fsCopy(target, 'dc:/cp.bin', path.join(dir, 'cp-back.bin'));
  // The bulk rate across the daemons of FS's and RDISK's nodes, in the same run.
  const owner = await (await client(1)).bind(dc, { name: 'bulk-owner' });
  const copier = await (await client(0)).bind(dc, { name: 'bulk-copier' });
  const buf = randomBytes(bytes);
  const grant = owner.grant(buf, { grantee: copier.endpoint, access: 'read', whileWaiting: false });
  const into2 = new Uint8Array(bytes);
  await copier.copyFrom({ owner: owner.endpoint, grant }, into2.subarray(0, 4 * MiB));
  const t0 = performance.now();
  await copier.copyFrom({ owner: owner.endpoint, grant }, into2);
  const bulkMs = performance.now() - t0;
  await owner.unbind();
  await copier.unbind();
  const rate = (n: number, ms: number): number => n / MiB / (ms / 1000);
  const bulk = rate(bytes, bulkMs);
  const note = { bytes, baselineIs: 'bulk copyFrom of the same size across the daemons of node 0 and node 1, same run' };
  return [
    { suite: SUITE, case: 'dvs cp into the DC, RDISK remote', value: round(rate(into.bytes, into.ms), 1), unit: 'MiB/s', baseline: round(bulk, 1), slowdown: round(bulk / rate(into.bytes, into.ms), 2), ...note },
    { suite: SUITE, case: 'dvs cp out of the DC, RDISK remote', value: round(rate(out.bytes, out.ms), 1), unit: 'MiB/s', baseline: round(bulk, 1), slowdown: round(bulk / rate(out.bytes, out.ms), 2), ...note },
  ];
}
