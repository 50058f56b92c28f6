/**
 * A DC as a container on one node (docs/vos/containers.md): its own PID, UTS, IPC and mount
 * namespaces (namespaces.ts) and a cgroup with its CPU, memory and process-count limits (cgroups.ts),
 * one of each per DC per node. SYSTASK makes one `DcContainer` per DC it serves and starts the DC's
 * processes with `spawn()`, which returns a Node ChildProcess whose program runs inside both from
 * its first instruction:
 *
 *   nsenter --target=<pid 1> --pid --uts --ipc --mount --wd=<cwd> --   (forks: its child is in the PID ns)
 *     setpriv --pdeathsig KILL --                                      (the child dies if nsenter dies)
 *       sh -c '<check nsenter still lives; write $$ into each cgroup.procs>; exec "$@"' ...
 *         <program> <args>                                             (same pid from setpriv on)
 *
 * nsenter waits for its child and exits with its status (or dies of its signal), so the ChildProcess
 * reports the program's exit; its kill() signals the program itself, not nsenter. Where the node
 * lacks root, unshare/nsenter or writable cgroups, the container runs its programs with what there
 * is (down to plainly), and says so once through the logger; it never fails for that.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { DvsError } from '../../ipc/errors.js';
import { silentLogger, type Logger } from '../../runtime/logger.js';
import { DcCgroup, cgroupName, pollUntil, validateLimits, type CgroupLimits, type CgroupResource, type CgroupUsage } from './cgroups.js';
import { DcNamespaces, HOSTNAME_RE } from './namespaces.js';
import { findExecutable, probeSupport, type ContainerSupport, type ContainerSupportOptions } from './support.js';

/** How a DC runs on this node: `container` (namespaces and cgroups), one of the two, or `plain`. */
export type ContainerKind = 'container' | 'namespaces' | 'cgroups' | 'plain';

export interface ContainerMode extends ContainerSupport {
  readonly kind: ContainerKind;
}

export interface DcContainerOptions {
  readonly dcid: number;
  readonly node: number;
  readonly limits?: CgroupLimits;
  /** The hostname the DC's processes see (default `dc<dcid>`). */
  readonly hostname?: string;
  /** Prefix of the cgroup's name, `<prefix>dc<dcid>-n<node>` (default `dvs-`): keeps tests and daemons sharing a host apart. */
  readonly prefix?: string;
  readonly logger?: Logger;
  /** `plain` runs programs plainly whatever the node supports (default `auto`). */
  readonly isolation?: 'auto' | 'plain';
  /** Where to look for cgroups (tests). */
  readonly support?: Omit<ContainerSupportOptions, 'isolation'>;
  /** A cgroup of this DC's name left with processes in it (an earlier run's) is emptied, instead of EDVSBUSY. */
  readonly replace?: boolean;
}

export interface DcSpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly stdio?: StdioOptions;
  readonly detached?: boolean;
}

/** How a DC process ended. `reason` is the sentence for an operator: "killed: over the DC's memory limit". */
export interface DcExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The OOM killer killed it: it died of SIGKILL and the DC's OOM-kill count rose while it ran. */
  readonly oomKilled: boolean;
  readonly reason: string;
  readonly error?: Error;
}

export interface DcPid {
  /** The pid on the host (kill(2) from here). */
  readonly hostPid: number;
  /** The pid the process sees as its own, inside the DC's PID namespace (= hostPid without namespaces). */
  readonly nsPid: number;
}

export interface DcProcessInfo extends DcPid {
  readonly comm: string;
}

/**
 * A DC process as a Node ChildProcess. With namespaces, `pid` is nsenter's (the program is its
 * child, see `program()`); `kill()` signals the program; `exit` resolves once, never rejects.
 */
export interface DcChildProcess extends ChildProcess {
  readonly dcid: number;
  /** Whether it runs in the DC's namespaces (else on the host's). */
  readonly contained: boolean;
  readonly exit: Promise<DcExit>;
  /** The program's own pids, once it runs (undefined if it ended first). */
  program(timeoutMs?: number): Promise<DcPid | undefined>;
}

export interface DcUsage extends CgroupUsage {
  /** `cgroup`: the kernel's accounting of the whole DC; `proc`: summed from /proc over the processes DVS started (plain mode; approximate). */
  readonly source: 'cgroup' | 'proc';
}

export interface StopOptions {
  /** SIGTERM first and wait this long for the processes to end before SIGKILL (default 2000 ms; 0: SIGKILL at once). */
  readonly graceMs?: number;
  /** Bound on each later wait (holder exit, cgroup removal), in ms (default 5000). */
  readonly timeoutMs?: number;
}

/**
 * The sh program between nsenter and the program: with `ppid0` first (it runs under setpriv's
 * parent-death signal, in the PID namespace, where nsenter outside it shows as parent 0), it gives up
 * if nsenter already died before the death signal was armed: the check man prctl(2) prescribes, which
 * leaves no window for an orphan. Then it joins the cgroups named by its next $1 arguments and execs
 * the rest.
 */
const JOIN_SCRIPT = [
  'if [ "$1" = ppid0 ] && [ "$PPID" != 0 ]; then exit 137; fi; shift',
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do',
  '  echo $$ > "$1" || { echo "dvs: cannot join the DC cgroup ($1)" >&2; exit 125; }',
  '  shift; n=$((n - 1))',
  'done',
  'exec "$@"',
].join('\n');

const OOM_REASON = "killed: over the DC's memory limit";

function kindOf(namespaces: boolean, cgroups: boolean): ContainerKind {
  if (namespaces && cgroups) return 'container';
  if (namespaces) return 'namespaces';
  return cgroups ? 'cgroups' : 'plain';
}

/** A process's CPU seconds (with its reaped children's) and resident bytes, from /proc/<pid>/stat. */
async function procUsage(pid: number): Promise<{ cpu: number; rss: number }> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // Fields 14-17 (utime stime cutime cstime) in clock ticks (USER_HZ, 100 on Linux), 24 rss in pages.
    const ticks = (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0);
    return { cpu: ticks / 100, rss: (f[21] ?? 0) * 4096 };
  } catch {
    return { cpu: 0, rss: 0 };
  }
}

async function commOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
}

/** One DC on one node: start it, spawn its processes, read what they use, stop it leaving nothing behind. */
export class DcContainer {
  readonly dcid: number;
  readonly node: number;
  readonly hostname: string;
  /** The cgroup's name (also used where there are no cgroups, in messages). */
  readonly name: string;
  private readonly opts: DcContainerOptions;
  private readonly logger: Logger;
  private limits: CgroupLimits;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private currentMode: ContainerMode | undefined;
  private ns: DcNamespaces | undefined;
  private cgroup: DcCgroup | undefined;
  private tools = { nsenter: 'nsenter', sh: 'sh', setpriv: undefined as string | undefined };
  private readonly children = new Set<DcChildProcess>();

  constructor(opts: DcContainerOptions) {
    this.dcid = opts.dcid;
    this.node = opts.node;
    this.name = cgroupName(opts.prefix ?? 'dvs-', opts.dcid, opts.node);
    this.hostname = opts.hostname ?? `dc${opts.dcid}`;
    if (!HOSTNAME_RE.test(this.hostname)) throw new DvsError('EDVSINVAL', `bad DC hostname ${JSON.stringify(this.hostname)}`, { details: { field: 'hostname' } });
    this.limits = opts.limits ?? {};
    validateLimits(this.limits);
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
  }

  /** How the DC runs here; undefined before start(). */
  get mode(): ContainerMode | undefined {
    return this.currentMode;
  }

  /** The cgroup's directories (none without cgroups). */
  get cgroupDirs(): readonly string[] {
    return this.cgroup?.dirList() ?? [];
  }

  /** The namespace holder (unshare) and the namespace's pid 1, on the host; undefined without namespaces. */
  get holder(): { readonly holderPid: number; readonly initPid: number } | undefined {
    return this.ns && { holderPid: this.ns.holderPid, initPid: this.ns.initPid };
  }

  /** Makes the namespaces and the cgroup as far as the node allows; reports any shortfall once (logger.warn). */
  async start(): Promise<ContainerMode> {
    if (this.state !== 'new') throw new DvsError('EDVSDCRUN', `DC ${this.dcid} container on node ${this.node} was already started`);
    this.state = 'starting';
    const probe = await probeSupport({ ...this.opts.support, isolation: this.opts.isolation ?? 'auto' });
    const notes: string[] = [];
    try {
      if (probe.support.namespaces) {
        this.tools = { nsenter: findExecutable('nsenter') ?? 'nsenter', sh: findExecutable('sh') ?? 'sh', setpriv: probe.setpriv ? findExecutable('setpriv') : undefined };
        try {
          this.ns = await DcNamespaces.start({ hostname: this.hostname, dieWithParent: probe.setpriv });
        } catch (err) {
          // The probe made namespaces, this did not: run without them rather than not at all, and say so.
          notes.push(`namespaces could not be made: ${(err as Error).message}`);
        }
      } else this.tools = { ...this.tools, sh: findExecutable('sh') ?? 'sh' };
      if (probe.cgroupHost) {
        try {
          this.cgroup = await DcCgroup.create({ host: probe.cgroupHost, name: this.name, limits: this.limits, replace: this.opts.replace ?? false });
          notes.push(...this.unappliedLimits(this.cgroup.dirs));
        } catch (err) {
          // A cgroup of this name in use (EDVSBUSY) or a limit the kernel refuses (EDVSINVAL) is the caller's to fix.
          if (!(err instanceof DvsError) || err.code !== 'EDVSIO') throw err;
          notes.push(`cgroup could not be made, limits not applied: ${err.message}`);
        }
      } else if (Object.keys(this.limits).length > 0) notes.push(`limits ${JSON.stringify(this.limits)} not applied (no cgroups)`);
    } catch (err) {
      await this.ns?.stop().catch(() => undefined);
      this.ns = undefined;
      this.state = 'stopped';
      throw err;
    }
    if (!probe.setpriv && this.ns) notes.push('setpriv not found: a DC process outlives a killed nsenter');
    const namespaces = this.ns !== undefined;
    const cgroups = this.cgroup?.version;
    const reason = [probe.support.reason, ...notes].filter((r) => r !== undefined).join('; ');
    this.currentMode = { kind: kindOf(namespaces, cgroups !== undefined), namespaces, cgroups, ...(reason ? { reason } : {}) };
    this.state = 'running';
    void this.ns?.whenExited().then(() => {
      if (this.state === 'running') this.logger.error({ dcid: this.dcid, node: this.node, holder: this.ns?.holderPid }, `DC ${this.dcid} namespaces on node ${this.node} ended: their holder exited, and every process in them with it`);
    });
    const fields = { dcid: this.dcid, node: this.node, mode: this.currentMode.kind, cgroups: cgroups ?? null, cgroup: this.name, hostname: this.hostname, limits: this.limits };
    if (this.currentMode.kind === 'plain') this.logger.warn({ ...fields, reason }, `DC ${this.dcid} runs its processes on node ${this.node} plainly, not as a container: ${reason}`);
    else if (this.currentMode.kind !== 'container' || reason) this.logger.warn({ ...fields, reason }, `DC ${this.dcid} on node ${this.node} is only partly a container (${this.currentMode.kind}): ${reason}`);
    else this.logger.info(fields, `DC ${this.dcid} container started on node ${this.node}`);
    return this.currentMode;
  }

  /** Replaces the limits (an absent field is no limit). EDVSINVAL for a bad value; a no-op without cgroups. */
  async setLimits(limits: CgroupLimits): Promise<void> {
    validateLimits(limits);
    this.limits = limits;
    await this.cgroup?.setLimits(limits);
  }

  /** Starts a program inside the DC: its namespaces and cgroup where there are, plainly otherwise. */
  spawn(program: string, args: readonly string[] = [], opts: DcSpawnOptions = {}): DcChildProcess {
    if (this.state !== 'running') throw new DvsError('EDVSDCNOTRUN', `DC ${this.dcid} container on node ${this.node} is not running (${this.state})`);
    if (this.ns && !this.ns.alive) throw new DvsError('EDVSDCNOTRUN', `DC ${this.dcid} namespaces on node ${this.node} are gone (holder ${this.ns.holderPid} exited)`);
    if (typeof program !== 'string' || program.length === 0) throw new DvsError('EDVSINVAL', 'spawn: program must be a non-empty string', { details: { field: 'program' } });
    const cwd = resolvePath(opts.cwd ?? process.cwd());
    const procs = this.cgroup?.procsFiles() ?? [];
    const join = (check: 'ppid0' | 'any'): string[] => [this.tools.sh, '-c', JOIN_SCRIPT, 'dvs-join', check, String(procs.length), ...procs];
    let argv: string[];
    if (this.ns) {
      const guard = this.tools.setpriv ? [this.tools.setpriv, '--pdeathsig', 'KILL', '--', ...join('ppid0')] : join('any');
      argv = [this.tools.nsenter, ...this.ns.nsenterArgs(cwd), '--', ...guard, program, ...args];
    } else if (procs.length > 0) argv = [...join('any'), program, ...args];
    else argv = [program, ...args];
    const oomBefore = this.cgroup?.oomKillsSync() ?? 0;
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: opts.env ?? process.env, stdio: opts.stdio ?? 'pipe', detached: opts.detached ?? false }) as DcChildProcess;
    const ns = this.ns;
    const cgroup = this.cgroup;
    let ended = false;
    const exit = new Promise<DcExit>((resolve) => {
      child.on('error', (error) => {
        if (child.pid !== undefined) return; // A failed kill() or send(): the process itself runs on.
        ended = true;
        resolve({ code: null, signal: null, oomKilled: false, reason: `could not start: ${error.message}`, error });
      });
      child.once('exit', (code, signal) => {
        ended = true;
        const oomKilled = signal === 'SIGKILL' && cgroup !== undefined && cgroup.oomKillsSync() > oomBefore;
        resolve({ code, signal, oomKilled, reason: oomKilled ? OOM_REASON : signal ? `killed by ${signal}` : `exited with code ${code}` });
      });
    });
    this.children.add(child);
    void exit.then(() => this.children.delete(child));
    const inner = (): number | undefined => (ns && child.pid !== undefined && !ended ? ns.childInside(child.pid) : undefined);
    if (ns) {
      // nsenter does not pass signals on: signal its child (the program) so its own exit status comes back.
      const killWrapper = child.kill.bind(child);
      child.kill = (signal?: NodeJS.Signals | number): boolean => {
        const pid = inner();
        if (pid !== undefined) {
          try {
            process.kill(pid, signal ?? 'SIGTERM');
            return true;
          } catch {
            // Gone between the look-up and the kill: nsenter is about to exit.
          }
        }
        return killWrapper(signal);
      };
    }
    Object.defineProperties(child, {
      dcid: { value: this.dcid, enumerable: true },
      contained: { value: ns !== undefined, enumerable: true },
      exit: { value: exit },
      program: {
        value: async (timeoutMs = 2000): Promise<DcPid | undefined> => {
          if (child.pid === undefined) return undefined;
          if (!ns) return ended ? undefined : { hostPid: child.pid, nsPid: child.pid };
          let pid: number | undefined;
          await pollUntil(() => (pid = inner()) !== undefined || ended, timeoutMs, 2);
          if (pid === undefined) return undefined;
          const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
          const nsPids = (/^NSpid:\s*(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
          return nsPids.length > 0 ? { hostPid: pid, nsPid: nsPids[nsPids.length - 1]! } : undefined;
        },
      },
    });
    return child;
  }

  /** The processes of the DC on this node: pids inside its PID namespace and on the host. */
  async ps(): Promise<DcProcessInfo[]> {
    if (this.ns) return this.ns.processes();
    const pids = this.cgroup ? await this.cgroup.pids() : [...this.children].filter((c) => c.exitCode === null && c.signalCode === null && c.pid !== undefined).map((c) => c.pid!);
    const out: DcProcessInfo[] = [];
    for (const pid of pids) {
      const comm = await commOf(pid);
      if (comm) out.push({ hostPid: pid, nsPid: pid, comm });
    }
    return out;
  }

  /** CPU seconds, memory bytes and process count of the DC on this node. */
  async usage(): Promise<DcUsage> {
    if (this.cgroup) return { ...(await this.cgroup.usage()), source: 'cgroup' };
    const procs = await this.ps();
    let cpu = 0;
    let rss = 0;
    for (const p of procs) {
      const u = await procUsage(p.hostPid);
      cpu += u.cpu;
      rss += u.rss;
    }
    return { cpuSeconds: cpu, memoryBytes: rss, pids: procs.length, source: 'proc' };
  }

  /** How many of the DC's processes the OOM killer killed on this node (0 without a memory cgroup). */
  async oomKills(): Promise<number> {
    return (await this.cgroup?.oomKills()) ?? 0;
  }

  /**
   * Stops everything: SIGTERM and a grace period, then the namespace's pid 1 is killed (so the kernel
   * kills all inside), the cgroup is emptied and removed, and the processes DVS started are reaped.
   * Idempotent; EDVSBUSY (after doing all it can) if something could not be removed.
   */
  async stop(opts: StopOptions = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    if (this.state === 'new' || this.state === 'starting') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    const graceMs = opts.graceMs ?? 2000;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const problems: string[] = [];
    if (graceMs > 0) {
      await this.signalAll('SIGTERM');
      await pollUntil(async () => (await this.ps()).length === 0, graceMs, 20);
    }
    try {
      await this.ns?.stop(timeoutMs);
    } catch (err) {
      problems.push((err as Error).message);
    }
    try {
      await this.cgroup?.remove(timeoutMs);
    } catch (err) {
      problems.push((err as Error).message);
    }
    for (const child of this.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!(await pollUntil(() => this.children.size === 0, timeoutMs, 5))) problems.push(`${this.children.size} process(es) did not exit`);
    this.state = 'stopped';
    if (problems.length > 0) {
      this.logger.error({ dcid: this.dcid, node: this.node, problems }, `DC ${this.dcid} container on node ${this.node} left something behind`);
      throw new DvsError('EDVSBUSY', `DC ${this.dcid} container on node ${this.node} not fully stopped: ${problems.join('; ')}`, { details: { problems } });
    }
    this.logger.info({ dcid: this.dcid, node: this.node }, `DC ${this.dcid} container stopped on node ${this.node}`);
  }

  private async signalAll(signal: NodeJS.Signals): Promise<void> {
    if (this.ns || this.cgroup) {
      for (const p of await this.ps()) {
        try {
          process.kill(p.hostPid, signal);
        } catch {
          // Gone already.
        }
      }
    } else for (const child of this.children) child.kill(signal);
  }

  /** The limits the cgroup could not apply because the host lacks their controller. */
  private unappliedLimits(dirs: Readonly<Partial<Record<CgroupResource, string>>>): string[] {
    const need: [keyof CgroupLimits, CgroupResource][] = [['cpu', 'cpu'], ['memoryMB', 'memory'], ['pids', 'pids']];
    return need.filter(([field, resource]) => this.limits[field] !== undefined && dirs[resource] === undefined).map(([field, resource]) => `limit ${field} not applied: no ${resource} controller`);
  }
}
