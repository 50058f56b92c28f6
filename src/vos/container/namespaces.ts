/**
 * A DC's namespaces on one node (docs/vos/containers.md, "Namespaces"): one PID, UTS, IPC and mount
 * namespace set per DC per node, kept alive by a holder process and entered with nsenter.
 *
 * The holder is `unshare --pid --uts --ipc --mount --fork --mount-proc --kill-child` running a small
 * shell as the namespace's pid 1: it sets the DC's hostname, starts a sleeper, says `ready`, then
 * waits forever, which also reaps the orphans the kernel reparents to it. `setpriv --pdeathsig KILL`
 * ties unshare to this process, and `--kill-child` ties pid 1 to unshare: when this process dies, the
 * namespace and everything in it dies with it. Killing pid 1 kills every process of the namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { DvsError } from '../../ipc/errors.js';
import { pollUntil } from './cgroups.js';

/** The pid 1 program of a DC's namespaces; $1 is the hostname. */
const HOLDER_SCRIPT = [
  'echo "$1" > /proc/sys/kernel/hostname || exit 97',
  `sleep ${2 ** 31 - 1} &`,
  'echo ready',
  'while :; do wait; done',
].join('\n');
const SLEEPER_CMDLINE = `sleep\0${2 ** 31 - 1}\0`;

export interface NsProcess {
  /** Its pid on the host (what kill(2) from here takes). */
  readonly hostPid: number;
  /** Its pid inside the DC's PID namespace (what it sees as its own). */
  readonly nsPid: number;
  readonly comm: string;
}

/** A pid's children, from /proc/<pid>/task/<pid>/children (or a scan of /proc where the kernel lacks that file). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return [];
    try {
      readFileSync(`/proc/${pid}/stat`);
    } catch {
      return [];
    }
  }
  const kids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) kids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return kids;
}

/** The PID namespace of a process, as its /proc link names it (`pid:[4026532...]`), or undefined. */
export function pidNamespaceOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** A process's status fields: its pid in each nested namespace (host first), parent, name. */
async function statusOf(pid: number): Promise<{ nsPids: number[]; ppid: number; comm: string; zombie: boolean } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? '';
    const nsPids = field('NSpid').split(/\s+/).filter(Boolean).map(Number);
    return { nsPids: nsPids.length > 0 ? nsPids : [pid], ppid: Number(field('PPid')), comm: field('Name'), zombie: field('State').startsWith('Z') };
  } catch {
    return undefined;
  }
}

export interface DcNamespacesOptions {
  /** The DC's hostname inside its UTS namespace. */
  readonly hostname: string;
  /** How long the holder may take to say ready, in ms (default 10 s). */
  readonly readyTimeoutMs?: number;
  /** Tie the holder to this process with setpriv --pdeathsig (default true; false where setpriv is missing). */
  readonly dieWithParent?: boolean;
}

export const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** One DC's namespace set on this node. */
export class DcNamespaces {
  readonly hostname: string;
  /** unshare's pid on the host (this process's child). */
  readonly holderPid: number;
  /** The host pid of the namespace's pid 1 (the nsenter target). */
  readonly initPid: number;
  /** The PID namespace, as /proc/<pid>/ns/pid names it. */
  readonly pidNamespace: string;
  private readonly holder: ChildProcess;
  private exited = false;
  private readonly exitedPromise: Promise<void>;

  private constructor(hostname: string, holder: ChildProcess, initPid: number, pidNamespace: string) {
    this.hostname = hostname;
    this.holder = holder;
    this.holderPid = holder.pid!;
    this.initPid = initPid;
    this.pidNamespace = pidNamespace;
    this.exitedPromise = new Promise<void>((resolve) => {
      if (holder.exitCode !== null || holder.signalCode !== null) resolve();
      else holder.once('exit', () => resolve());
    }).then(() => {
      this.exited = true;
    });
  }

  /** Starts the holder and waits until the namespaces exist and the hostname is set. */
  static async start(opts: DcNamespacesOptions): Promise<DcNamespaces> {
    if (!HOSTNAME_RE.test(opts.hostname)) throw new DvsError('EDVSINVAL', `bad DC hostname ${JSON.stringify(opts.hostname)}`, { details: { field: 'hostname' } });
    const unshare = ['unshare', '--pid', '--uts', '--ipc', '--mount', '--fork', '--mount-proc', '--kill-child', '--', 'sh', '-c', HOLDER_SCRIPT, 'dvs-dc-init', opts.hostname];
    const argv = opts.dieWithParent === false ? unshare : ['setpriv', '--pdeathsig', 'KILL', '--', ...unshare];
    const holder = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    holder.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    holder.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 4096)));
    let spawnError: Error | undefined;
    holder.once('error', (e) => (spawnError = e));
    let ended = false;
    holder.once('exit', () => (ended = true));
    const ready = await pollUntil(() => out.includes('ready\n') || ended || spawnError !== undefined, opts.readyTimeoutMs ?? 10_000, 5);
    const fail = (why: string): never => {
      if (!ended) holder.kill('SIGKILL');
      throw new DvsError('EDVSIO', `DC namespaces for ${opts.hostname} did not start: ${why}`, { cause: spawnError, details: { stderr: err.trim() } });
    };
    if (spawnError) fail(spawnError.message);
    if (!ready) fail('the holder did not say ready in time');
    if (!out.includes('ready\n')) fail(`the holder exited (${holder.exitCode ?? holder.signalCode}): ${err.trim()}`);
    holder.stdout!.resume();
    // pid 1 is unshare's only child; it forked before it said ready.
    const [initPid] = childrenOf(holder.pid!);
    const pidNamespace = initPid === undefined ? undefined : pidNamespaceOf(initPid);
    if (initPid === undefined || pidNamespace === undefined) fail('cannot find the namespace\'s pid 1');
    if (pidNamespace === pidNamespaceOf('self')) fail('pid 1 of the holder is in this process\'s PID namespace');
    return new DcNamespaces(opts.hostname, holder, initPid!, pidNamespace!);
  }

  /** Whether the holder (and so the namespaces) still runs. */
  get alive(): boolean {
    return !this.exited;
  }

  /** Resolves when the holder exits (stop(), or someone killed it). */
  whenExited(): Promise<void> {
    return this.exitedPromise;
  }

  /** nsenter's arguments that enter this set (nsenter then forks, so its child is in the PID namespace). */
  nsenterArgs(cwd: string): string[] {
    return [`--target=${this.initPid}`, '--pid', '--uts', '--ipc', '--mount', `--wd=${cwd}`];
  }

  /** The host pid of a process's child inside this namespace (nsenter's forked child), if it has one. */
  childInside(pid: number): number | undefined {
    return childrenOf(pid).find((kid) => pidNamespaceOf(kid) === this.pidNamespace);
  }

  /** The live processes inside (not the holder's own pid 1 and sleeper unless asked), by a scan of /proc. */
  async processes(opts: { includeHolder?: boolean } = {}): Promise<NsProcess[]> {
    const found: NsProcess[] = [];
    let names: string[];
    try {
      names = await readdir('/proc');
    } catch {
      return [];
    }
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      const hostPid = Number(name);
      try {
        if ((await readlink(`/proc/${name}/ns/pid`)) !== this.pidNamespace) continue;
      } catch {
        continue;
      }
      const st = await statusOf(hostPid);
      // A zombie has ended; its reaper may be outside the namespace (the subreaper of a killed nsenter).
      if (st === undefined || st.zombie) continue;
      const nsPid = st.nsPids[st.nsPids.length - 1]!;
      if (!opts.includeHolder && (hostPid === this.initPid || (st.ppid === this.initPid && (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')) === SLEEPER_CMDLINE))) continue;
      found.push({ hostPid, nsPid, comm: st.comm });
    }
    return found.sort((a, b) => a.nsPid - b.nsPid);
  }

  /**
   * Kills the namespace's pid 1, which makes the kernel kill every process in it, and waits (bounded)
   * for the holder to exit; SIGKILLs the holder itself if it has not. Idempotent.
   */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.exited) return;
    try {
      process.kill(this.initPid, 'SIGKILL');
    } catch {
      // Already gone: the holder exits by itself.
    }
    const gone = await pollUntil(() => this.exited, timeoutMs);
    if (!gone) {
      this.holder.kill('SIGKILL');
      if (!(await pollUntil(() => this.exited, timeoutMs))) throw new DvsError('EDVSBUSY', `DC namespace holder ${this.holderPid} (${this.hostname}) did not exit`, { details: { pid: this.holderPid } });
    }
  }
}
