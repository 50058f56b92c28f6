/**
 * A DC's cgroup on one node (docs/vos/containers.md, "Cgroups"): where the host's cgroups are, one
 * cgroup per DC per node with its CPU, memory and process-count limits, the processes in it, their
 * usage, whether the OOM killer struck, and its removal. What differs between cgroup v1 and v2 (file
 * names, formats, enabling controllers) lives in cgroup-v1.ts and cgroup-v2.ts behind `CgroupFlavor`;
 * this module holds what both share. All file access goes through `CgroupIo`, so the layout is tested
 * on a temporary directory laid out like each hierarchy.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { DvsError } from '../../ipc/errors.js';
import { cgroupV1 } from './cgroup-v1.js';
import { V2_LEAF, cgroupV2 } from './cgroup-v2.js';

export type CgroupVersion = 'v1' | 'v2';

/**
 * What a DC cgroup uses. v1 controller names; in v2, `cpuacct` is the core `cpu.stat` (always there)
 * and the others are the controllers of the same name.
 */
export type CgroupResource = 'cpu' | 'cpuacct' | 'memory' | 'pids';
export const CGROUP_RESOURCES: readonly CgroupResource[] = ['cpu', 'cpuacct', 'memory', 'pids'];

/** A DC's limits on one node; an absent field is no limit. */
export interface CgroupLimits {
  /** CPU time, in cores (0.5 = half of one core), enforced as a CFS quota per 100 ms period. */
  readonly cpu?: number;
  /** Memory (RSS and page cache, swap excluded where the host allows), in MiB; past it the OOM killer runs. */
  readonly memoryMB?: number;
  /** Processes and threads at once; past it fork() and clone() fail with EAGAIN. */
  readonly pids?: number;
}

export interface CgroupUsage {
  /** CPU time used by the DC's processes since the cgroup was made (user + system), in seconds. */
  readonly cpuSeconds: number;
  /** Memory charged to the cgroup now, in bytes. */
  readonly memoryBytes: number;
  /** Processes and threads in the cgroup now. */
  readonly pids: number;
  /** Time the CPU quota held the DC back, in seconds (undefined where the host does not say). */
  readonly throttledSeconds?: number;
  /** Forks refused by the pids limit (the `max` count of pids.events), where the host says. */
  readonly pidsLimitHits?: number;
}

/** The file operations on cgroup directories; the default is the real file system. */
export interface CgroupIo {
  readFile(path: string): Promise<string>;
  readFileSync(path: string): string;
  writeFile(path: string, data: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  readdir(path: string): Promise<string[]>;
}

export const realCgroupIo: CgroupIo = {
  readFile: (path) => readFile(path, 'utf8'),
  readFileSync: (path) => readFileSync(path, 'utf8'),
  writeFile: (path, data) => writeFile(path, data),
  mkdir: async (path) => {
    await mkdir(path);
  },
  rmdir: (path) => rmdir(path),
  exists: async (path) => {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  },
  readdir: (path) => readdir(path),
};

/** One file write that applies a limit; `optional` writes are skipped where the file does not exist. */
export interface LimitWrite {
  readonly resource: CgroupResource;
  readonly file: string;
  readonly value: string;
  readonly optional?: boolean;
}

/** A DC cgroup's directory per resource (v1: one per hierarchy; v2: the same directory for all). */
export type CgroupDirs = Readonly<Partial<Record<CgroupResource, string>>>;

/** What cgroup v1 and v2 do differently; one implementation each, no other module knows the files. */
export interface CgroupFlavor {
  readonly version: CgroupVersion;
  /**
   * Readies a parent directory before the first DC cgroup is made in it (v2: enables the controllers
   * in its cgroup.subtree_control). Returns the resources it could not make available, with why.
   */
  prepareParent(parent: string, wanted: readonly CgroupResource[], io: CgroupIo): Promise<string[]>;
  /** The writes that set `limits`, in order; an absent field resets that limit to none. */
  limitWrites(limits: CgroupLimits): LimitWrite[];
  readUsage(dirs: CgroupDirs, io: CgroupIo): Promise<CgroupUsage>;
  /** The file that counts OOM kills, and how to read the count from it. */
  readonly oomFile: { readonly resource: CgroupResource; readonly file: string };
  parseOomKills(text: string): number;
  /** Kills every process of the cgroup at once where the kernel can (v2 cgroup.kill); false if it cannot. */
  killAll(dirs: CgroupDirs, io: CgroupIo): Promise<boolean>;
}

export function flavorOf(version: CgroupVersion): CgroupFlavor {
  return version === 'v1' ? cgroupV1 : cgroupV2;
}

/** Where DC cgroups are made on this host. */
export interface CgroupHost {
  readonly version: CgroupVersion;
  /** The parent directory per resource: this process's own cgroup in each hierarchy. */
  readonly parents: CgroupDirs;
  /** Resources the host lacks (no hierarchy, controller not available), with the reason. */
  readonly missing: readonly string[];
  readonly io: CgroupIo;
}

export type CgroupDetection = { readonly host: CgroupHost; readonly reason?: undefined } | { readonly host: undefined; readonly reason: string };

export interface DetectCgroupsOptions {
  /** The text of /proc/self/mountinfo (default: read it). */
  readonly mountinfo?: string;
  /** The text of /proc/self/cgroup (default: read it). */
  readonly selfCgroup?: string;
  /** Prefixed to every mount point (tests: a temporary directory laid out like /sys/fs/cgroup). */
  readonly root?: string;
  /** Use this version even where the host has both (a hybrid host mounts v2 at /sys/fs/cgroup/unified). */
  readonly version?: CgroupVersion;
  readonly io?: CgroupIo;
  /** Make and remove a probe directory under each parent to check it is writable (default true). */
  readonly probe?: boolean;
}

interface CgroupMount {
  readonly version: CgroupVersion;
  readonly mountPoint: string;
  readonly root: string;
  /** v1: the controllers of this hierarchy (super options); v2: empty. */
  readonly controllers: readonly string[];
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

/** The cgroup file systems of a /proc/self/mountinfo text. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(' ');
    const right = line.slice(dash + 3).split(' ');
    const [fstype, , superOpts = ''] = right;
    const root = left[3];
    const mountPoint = left[4];
    if (root === undefined || mountPoint === undefined) continue;
    if (fstype === 'cgroup2') mounts.push({ version: 'v2', mountPoint: unescapeMount(mountPoint), root: unescapeMount(root), controllers: [] });
    else if (fstype === 'cgroup') {
      const controllers = superOpts.split(',').filter((o) => CGROUP_RESOURCES.includes(o as CgroupResource));
      mounts.push({ version: 'v1', mountPoint: unescapeMount(mountPoint), root: unescapeMount(root), controllers });
    }
  }
  return mounts;
}

/** /proc/self/cgroup: hierarchy controllers ("" for v2) → this process's path in it. */
export function parseSelfCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (m) paths.set(m[2]!, m[3]!);
  }
  return paths;
}

/** The directory of cgroup `path` on a mount whose root is `mountRoot`. */
function dirOnMount(mount: CgroupMount, path: string, root: string): string {
  let rel = path;
  if (mount.root !== '/' && (path === mount.root || path.startsWith(`${mount.root}/`))) rel = path.slice(mount.root.length) || '/';
  const dir = join(root, mount.mountPoint, rel);
  return dir.length > 1 && dir.endsWith('/') ? dir.slice(0, -1) : dir;
}

/** Finds where this process's cgroups are, picks the version, and checks the parents are writable. */
export async function detectCgroups(opts: DetectCgroupsOptions = {}): Promise<CgroupDetection> {
  const io = opts.io ?? realCgroupIo;
  const root = opts.root ?? '/';
  let mountinfo: string;
  let selfCgroup: string;
  try {
    mountinfo = opts.mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8'));
    selfCgroup = opts.selfCgroup ?? (await readFile('/proc/self/cgroup', 'utf8'));
  } catch (err) {
    return { host: undefined, reason: `cannot read /proc/self: ${(err as Error).message}` };
  }
  const mounts = parseCgroupMounts(mountinfo);
  const paths = parseSelfCgroup(selfCgroup);
  const v1 = mounts.filter((m) => m.version === 'v1' && m.controllers.length > 0);
  const v2 = mounts.find((m) => m.version === 'v2');
  const version = opts.version ?? (v1.some((m) => m.controllers.some((c) => c !== 'cpuacct')) ? 'v1' : v2 ? 'v2' : undefined);
  if (version === undefined) return { host: undefined, reason: 'no cgroup file system is mounted' };

  const parents: Partial<Record<CgroupResource, string>> = {};
  const missing: string[] = [];
  if (version === 'v1') {
    for (const resource of CGROUP_RESOURCES) {
      const mount = v1.find((m) => m.controllers.includes(resource));
      const path = mount && [...paths].find(([ctrls]) => ctrls.split(',').includes(resource))?.[1];
      if (mount === undefined || path === undefined) missing.push(`${resource}: no v1 hierarchy`);
      else parents[resource] = dirOnMount(mount, path, root);
    }
  } else {
    const own = paths.get('');
    if (v2 === undefined || own === undefined) return { host: undefined, reason: 'no cgroup v2 file system for this process' };
    // A process moved into the leaf (cgroup-v2.ts) makes DC cgroups beside it, not under it.
    const path = posix.basename(own) === V2_LEAF ? posix.dirname(own) : own;
    const base = dirOnMount(v2, path, root);
    let available: string[];
    try {
      available = (await io.readFile(posix.join(base, 'cgroup.controllers'))).trim().split(/\s+/).filter(Boolean);
    } catch (err) {
      return { host: undefined, reason: `cannot read ${base}/cgroup.controllers: ${(err as Error).message}` };
    }
    for (const resource of CGROUP_RESOURCES) {
      if (resource === 'cpuacct' || available.includes(resource)) parents[resource] = base;
      else missing.push(`${resource}: controller not available in ${base}`);
    }
  }
  if (Object.keys(parents).length === 0) return { host: undefined, reason: `cgroup ${version}: ${missing.join('; ')}` };

  if (opts.probe !== false) {
    for (const parent of new Set(Object.values(parents))) {
      const probe = posix.join(parent, `dvs-probe-${process.pid}`);
      try {
        await io.mkdir(probe);
        await io.rmdir(probe);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') await io.rmdir(probe).catch(() => undefined);
        else return { host: undefined, reason: `cgroup ${version}: cannot make a cgroup under ${parent}: ${(err as Error).message}` };
      }
    }
  }
  return { host: { version, parents, missing, io } };
}

/** Checks limits: EDVSINVAL naming the field for anything that is not a positive, finite number of the right kind. */
export function validateLimits(limits: CgroupLimits): void {
  const bad = (field: string, value: unknown, why: string): never => {
    throw new DvsError('EDVSINVAL', `limit ${field} ${why} (got ${JSON.stringify(value)})`, { details: { field, value } });
  };
  if (typeof limits !== 'object' || limits === null) bad('limits', limits, 'must be an object');
  for (const key of Object.keys(limits)) if (!['cpu', 'memoryMB', 'pids'].includes(key)) bad(key, (limits as Record<string, unknown>)[key], 'is not a limit (cpu, memoryMB, pids)');
  const { cpu, memoryMB, pids } = limits;
  if (cpu !== undefined && (typeof cpu !== 'number' || !Number.isFinite(cpu) || cpu < 0.01 || cpu > 4096)) bad('cpu', cpu, 'must be a number of cores from 0.01 to 4096');
  if (memoryMB !== undefined && (typeof memoryMB !== 'number' || !Number.isInteger(memoryMB) || memoryMB < 4 || memoryMB > 2 ** 32)) bad('memoryMB', memoryMB, 'must be an integer number of MiB, at least 4');
  if (pids !== undefined && (typeof pids !== 'number' || !Number.isInteger(pids) || pids < 1 || pids > 2 ** 22)) bad('pids', pids, 'must be a positive integer');
}

/** The name of a DC's cgroup on a node: `<prefix>dc<dcid>-n<node>`. */
export function cgroupName(prefix: string, dcid: number, node: number): string {
  if (!/^[A-Za-z0-9_.-]{0,64}$/.test(prefix) || prefix.startsWith('.')) throw new DvsError('EDVSINVAL', `cgroup prefix ${JSON.stringify(prefix)} must be letters, digits, '_', '-', '.'`, { details: { field: 'prefix' } });
  if (!Number.isInteger(dcid) || dcid < 0) throw new DvsError('EDVSBADDCID', `bad DC id ${dcid}`, { details: { dcid } });
  if (!Number.isInteger(node) || node < 0) throw new DvsError('EDVSBADNODEID', `bad node id ${node}`, { details: { node } });
  return `${prefix}dc${dcid}-n${node}`;
}

export interface CreateCgroupOptions {
  readonly host: CgroupHost;
  readonly name: string;
  readonly limits?: CgroupLimits;
  /** A cgroup of that name that still has processes (a previous run's) is emptied; otherwise EDVSBUSY. */
  readonly replace?: boolean;
  /** Bounded waits (emptying a replaced cgroup), in ms. */
  readonly timeoutMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `done` every few ms until it is true or the deadline passes; returns whether it became true. */
export async function pollUntil(done: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(everyMs, Math.max(1, deadline - Date.now())));
  }
}

const parsePids = (text: string): number[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^\d+$/.test(l))
    .map(Number);

/** One DC's cgroup on this node: its directories, limits, processes, usage, OOM count, removal. */
export class DcCgroup {
  readonly version: CgroupVersion;
  readonly name: string;
  /** The cgroup's directory per resource this host has. */
  readonly dirs: CgroupDirs;
  /** Resources the host lacks, with the reason (limits on them are not applied). */
  readonly missing: readonly string[];
  private readonly flavor: CgroupFlavor;
  private readonly io: CgroupIo;
  private removed = false;

  private constructor(host: CgroupHost, name: string, dirs: CgroupDirs, missing: readonly string[]) {
    this.version = host.version;
    this.name = name;
    this.dirs = dirs;
    this.missing = missing;
    this.flavor = flavorOf(host.version);
    this.io = host.io;
  }

  /** Makes the DC's cgroup under each parent (or adopts an empty one of that name) and sets its limits. */
  static async create(opts: CreateCgroupOptions): Promise<DcCgroup> {
    const { host, name } = opts;
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(name)) throw new DvsError('EDVSINVAL', `bad cgroup name ${JSON.stringify(name)}`, { details: { field: 'name' } });
    if (opts.limits) validateLimits(opts.limits);
    const flavor = flavorOf(host.version);
    const missing = [...host.missing];
    const dirs: Partial<Record<CgroupResource, string>> = {};
    const byParent = new Map<string, CgroupResource[]>();
    for (const [resource, parent] of Object.entries(host.parents) as [CgroupResource, string][]) byParent.set(parent, [...(byParent.get(parent) ?? []), resource]);
    for (const [parent, resources] of byParent) {
      const lacking = await flavor.prepareParent(parent, resources, host.io);
      missing.push(...lacking);
      for (const r of resources) if (!lacking.some((l) => l.startsWith(`${r}:`))) dirs[r] = posix.join(parent, name);
    }
    const cg = new DcCgroup(host, name, dirs, missing);
    const made: string[] = [];
    try {
      for (const dir of cg.dirList()) {
        try {
          await host.io.mkdir(dir);
          made.push(dir);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new DvsError('EDVSIO', `cannot make cgroup ${dir}: ${(err as Error).message}`, { cause: err, details: { dir } });
          const left = parsePids(await host.io.readFile(posix.join(dir, 'cgroup.procs')));
          if (left.length > 0 && !opts.replace) throw new DvsError('EDVSBUSY', `cgroup ${dir} already exists with ${left.length} process(es) in it`, { details: { dir, pids: left } });
        }
      }
      if (opts.replace) await cg.killAll(opts.timeoutMs ?? 5000);
      await cg.setLimits(opts.limits ?? {});
    } catch (err) {
      for (const dir of made.reverse()) await host.io.rmdir(dir).catch(() => undefined);
      throw err;
    }
    return cg;
  }

  /** Every distinct directory of this cgroup (v1 hierarchies co-mounted share one). */
  dirList(): string[] {
    return [...new Set(Object.values(this.dirs))];
  }

  /** The cgroup.procs files a process writes its pid into to join (all of them, for v1). */
  procsFiles(): string[] {
    return this.dirList().map((d) => posix.join(d, 'cgroup.procs'));
  }

  /** Sets the limits (replacing all earlier ones; an absent field is no limit). Limits on missing resources are skipped. */
  async setLimits(limits: CgroupLimits): Promise<void> {
    validateLimits(limits);
    this.checkLive();
    for (const w of this.flavor.limitWrites(limits)) {
      const dir = this.dirs[w.resource];
      if (dir === undefined) continue;
      const file = posix.join(dir, w.file);
      if (w.optional && !(await this.io.exists(file))) continue;
      try {
        await this.io.writeFile(file, w.value);
      } catch (err) {
        throw new DvsError('EDVSINVAL', `cgroup refused ${w.value} in ${file}: ${(err as Error).message}`, { cause: err, details: { file, value: w.value } });
      }
    }
  }

  /** Moves a process (host pid) into the cgroup, in every hierarchy. */
  async addPid(pid: number): Promise<void> {
    this.checkLive();
    for (const file of this.procsFiles()) {
      try {
        await this.io.writeFile(file, String(pid));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'EDVSSRCH' : 'EDVSIO';
        throw new DvsError(code, `cannot move pid ${pid} into ${file}: ${(err as Error).message}`, { cause: err, details: { pid, file } });
      }
    }
  }

  /** The host pids of the processes in the cgroup (union over the hierarchies). */
  async pids(): Promise<number[]> {
    const all = new Set<number>();
    for (const file of this.procsFiles()) {
      try {
        for (const pid of parsePids(await this.io.readFile(file))) all.add(pid);
      } catch {
        // A directory already gone has no processes.
      }
    }
    return [...all].sort((a, b) => a - b);
  }

  async usage(): Promise<CgroupUsage> {
    return this.flavor.readUsage(this.dirs, this.io);
  }

  /** How many processes the OOM killer killed in this cgroup (0 where the host lacks the memory controller). */
  async oomKills(): Promise<number> {
    const dir = this.dirs[this.flavor.oomFile.resource];
    if (dir === undefined) return 0;
    try {
      return this.flavor.parseOomKills(await this.io.readFile(posix.join(dir, this.flavor.oomFile.file)));
    } catch {
      return 0;
    }
  }

  /** oomKills() without waiting, for a baseline taken at the instant a process starts. */
  oomKillsSync(): number {
    const dir = this.dirs[this.flavor.oomFile.resource];
    if (dir === undefined) return 0;
    try {
      return this.flavor.parseOomKills(this.io.readFileSync(posix.join(dir, this.flavor.oomFile.file)));
    } catch {
      return 0;
    }
  }

  /** SIGKILLs every process in the cgroup (v2: cgroup.kill) until it is empty; false if some remain at the deadline. */
  async killAll(timeoutMs: number): Promise<boolean> {
    if (!(await this.flavor.killAll(this.dirs, this.io))) await this.signalAll('SIGKILL');
    return pollUntil(async () => {
      const left = await this.pids();
      if (left.length === 0) return true;
      await this.signalAll('SIGKILL');
      return false;
    }, timeoutMs);
  }

  /** Sends a signal to every process in the cgroup. */
  async signalAll(signal: NodeJS.Signals): Promise<void> {
    for (const pid of await this.pids()) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone already.
      }
    }
  }

  /** Kills what is left, then removes the directories (retrying while the kernel still holds them). Idempotent. */
  async remove(timeoutMs = 5000): Promise<void> {
    if (this.removed) return;
    const deadline = Date.now() + timeoutMs;
    const emptied = await this.killAll(timeoutMs);
    const left: string[] = [];
    for (const dir of this.dirList()) {
      let lastErr: unknown;
      const gone = await pollUntil(async () => {
        try {
          await this.io.rmdir(dir);
          return true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
          lastErr = err;
          return false;
        }
      }, Math.max(0, deadline - Date.now()));
      if (!gone) left.push(`${dir}: ${(lastErr as Error | undefined)?.message ?? 'busy'}`);
    }
    if (left.length > 0) throw new DvsError('EDVSBUSY', `cgroup ${this.name} not removed${emptied ? '' : ' (processes left in it)'}: ${left.join('; ')}`, { details: { dirs: left } });
    this.removed = true;
  }

  private checkLive(): void {
    if (this.removed) throw new DvsError('EDVSDCNOTRUN', `cgroup ${this.name} was removed`);
  }
}
