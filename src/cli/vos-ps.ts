/**
 * VOS processes from the command line: `dvs run --vos` starts a program through the DC's PM (on a
 * chosen node, or the least loaded), `dvs ps --dc N` shows PM's table beside the kernel's. Both go
 * through the daemon of a live node of the DC, as a client of its VOS.
 */
import { DvsError } from '../ipc/errors.js';
import type { PmPsRow } from '../vos/pm/pm-client.js';
import { Vos } from '../client/vos.js';
import type { DvsClient } from '../client/client.js';
import { withNodeClient, type ReachOptions } from './admin.js';
import { readClusterFile } from './cluster-files.js';
import { DEFAULT_TIMEOUT_MS, UnreachableError } from './reach.js';

/** Runs `fn` with the VOS of `dcid` through the first node of the cluster whose daemon answers (`via` first when given). */
async function withVos<T>(dir: string, dcid: number, fn: (vos: Vos) => Promise<T>, opts: ReachOptions & { via?: number } = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cluster = readClusterFile(dir);
  const nodes = [...cluster.nodes].sort((a, b) => (a.nodeId === opts.via ? -1 : b.nodeId === opts.via ? 1 : a.nodeId - b.nodeId));
  let last: unknown;
  for (const n of nodes) {
    try {
      const got = await withNodeClient(
        n.nodeId,
        n.dataDir,
        async (c: DvsClient) => {
          const vos = await Vos.open(c, { dcid, name: 'dvs-cli', timeoutMs });
          try {
            return { value: await fn(vos) };
          } finally {
            await vos.close();
          }
        },
        { timeoutMs },
      );
      if (got !== undefined) return got.value;
    } catch (err) {
      // A daemon that does not run the DC, or is unreachable: try the next; a VOS answer is final.
      if (!(err instanceof UnreachableError) && !(err instanceof DvsError && err.code === 'EDVSBADDCID')) throw err;
      last = err;
    }
  }
  if (last !== undefined) throw last;
  throw new DvsError('EDVSNONODE', `no daemon of the cluster in ${cluster.dir} runs; start one with dvs cluster up or dvs node start`);
}

export interface VosRunRequest {
  readonly program: string;
  readonly args: readonly string[];
  readonly node?: number;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

/** Starts a program through PM; resolves with its VOS pid and node. */
export function vosRun(dir: string, dcid: number, req: VosRunRequest, opts: ReachOptions = {}): Promise<{ pid: number; node: number }> {
  return withVos(
    dir,
    dcid,
    (vos) =>
      vos.pm((pm) =>
        pm.spawn(req.program, req.args, {
          ...(req.node === undefined ? {} : { node: req.node }),
          ...(req.env === undefined ? {} : { env: req.env }),
          ...(req.cwd === undefined ? {} : { cwd: req.cwd }),
        }),
      ),
    { ...opts, ...(req.node === undefined ? {} : { via: req.node }) },
  );
}

/** PM's process table of `dcid`. */
export function vosProcesses(dir: string, dcid: number, opts: ReachOptions = {}): Promise<PmPsRow[]> {
  return withVos(dir, dcid, (vos) => vos.pm((pm) => pm.ps()), opts);
}

function exitText(r: PmPsRow): string {
  if (r.exit === undefined) return '';
  const e = r.exit;
  return [e.code === undefined ? '' : `exit ${e.code}`, e.signal ?? '', e.reason ?? ''].filter((s) => s !== '').join(', ');
}

export function formatVosPs(dcid: number, rows: readonly PmPsRow[]): string {
  const head = ['PID', 'PPID', 'NODE', 'DC', 'STATE', 'CPU(ms)', 'RSS(KiB)', 'COMMAND'];
  const body = rows.map((r) => [String(r.pid), String(r.parent), String(r.node), String(dcid), r.state, String(Math.round(r.usage.cpuMs)), String(r.usage.rssKB), `${[r.program, ...r.args].join(' ')}${r.exit === undefined ? '' : `  (${exitText(r)})`}`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return [`VOS processes of DC ${dcid}`, line(head), ...body.map(line)].join('\n');
}
