/**
 * What this node can do for DC containers (docs/vos/containers.md, "Fallback"): namespaces need root,
 * util-linux unshare and nsenter, and a kernel that lets this process make PID, UTS, IPC and mount
 * namespaces (checked by making them once); cgroups need a writable cgroup v1 or v2 hierarchy
 * (checked by making and removing a probe cgroup). The answer for the default options is probed once
 * per process.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { detectCgroups, type CgroupHost, type CgroupVersion, type DetectCgroupsOptions } from './cgroups.js';

export interface ContainerSupport {
  /** PID, UTS, IPC and mount namespaces per DC. */
  readonly namespaces: boolean;
  /** The cgroup version DC limits use; undefined when there are none. */
  readonly cgroups: CgroupVersion | undefined;
  /** Why something is missing (absent when both are there). */
  readonly reason?: string;
}

export interface ContainerSupportOptions {
  /** `plain`: report no support, without probing (tests, or an operator's choice). Default `auto`. */
  readonly isolation?: 'auto' | 'plain';
  /** Where to look for cgroups (tests). Probes with options are not cached. */
  readonly cgroups?: DetectCgroupsOptions;
  /** Probe again even if the default answer is cached. */
  readonly fresh?: boolean;
}

/** The probe's full answer: the support, and what a container needs to use it. */
export interface SupportProbe {
  readonly support: ContainerSupport;
  readonly cgroupHost: CgroupHost | undefined;
  /** setpriv is there (the holder and the programs die with their parent). */
  readonly setpriv: boolean;
}

/** The path of an executable on PATH, or undefined. */
export function findExecutable(name: string, path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Runs a command to its end (bounded); its exit code, or a message. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d.slice(0, 2048)));
    child.once('error', (err) => resolve({ code: null, stderr: err.message }));
    child.once('close', (code, signal) => resolve({ code, stderr: stderr.trim() || (signal ? `killed by ${signal}` : '') }));
  });
}

async function probeNamespaces(): Promise<{ ok: boolean; reason?: string }> {
  const missing = ['unshare', 'nsenter'].filter((t) => findExecutable(t) === undefined);
  if (missing.length > 0) return { ok: false, reason: `${missing.join(' and ')} not found on PATH (util-linux)` };
  const r = await run('unshare', ['--pid', '--uts', '--ipc', '--mount', '--fork', '--mount-proc', '--kill-child', '--', 'true'], 10_000);
  if (r.code !== 0) return { ok: false, reason: `unshare cannot make namespaces here: ${r.stderr || `exit ${r.code}`}` };
  return { ok: true };
}

async function probe(opts: ContainerSupportOptions): Promise<SupportProbe> {
  try {
    return await probeOnce(opts);
  } catch (err) {
    return { support: { namespaces: false, cgroups: undefined, reason: `probe failed: ${(err as Error).message}` }, cgroupHost: undefined, setpriv: false };
  }
}

async function probeOnce(opts: ContainerSupportOptions): Promise<SupportProbe> {
  const setpriv = findExecutable('setpriv') !== undefined;
  if (opts.isolation === 'plain') return { support: { namespaces: false, cgroups: undefined, reason: 'isolation is plain (set by option)' }, cgroupHost: undefined, setpriv };
  if (process.platform !== 'linux') return { support: { namespaces: false, cgroups: undefined, reason: `not Linux (${process.platform})` }, cgroupHost: undefined, setpriv };
  const uid = process.getuid?.();
  if (uid !== 0) return { support: { namespaces: false, cgroups: undefined, reason: `not running as root (uid ${uid})` }, cgroupHost: undefined, setpriv };
  const [ns, cg] = await Promise.all([probeNamespaces(), detectCgroups(opts.cgroups)]);
  const reasons = [ns.ok ? undefined : ns.reason, cg.host ? (cg.host.missing.filter((m) => !m.startsWith('cpuacct')).length > 0 ? `cgroup ${cg.host.version} lacks ${cg.host.missing.join('; ')}` : undefined) : cg.reason].filter((r) => r !== undefined);
  return {
    support: { namespaces: ns.ok, cgroups: cg.host?.version, ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}) },
    cgroupHost: cg.host,
    setpriv,
  };
}

let cached: Promise<SupportProbe> | undefined;

/** The full probe (cached for the default options). */
export function probeSupport(opts: ContainerSupportOptions = {}): Promise<SupportProbe> {
  if (opts.isolation === 'plain' || opts.cgroups !== undefined) return probe(opts);
  if (cached === undefined || opts.fresh) cached = probe(opts);
  return cached;
}

/** Whether this node can run DCs as containers: namespaces, the cgroup version, and why not. Never throws. */
export async function containerSupport(opts: ContainerSupportOptions = {}): Promise<ContainerSupport> {
  return (await probeSupport(opts)).support;
}
