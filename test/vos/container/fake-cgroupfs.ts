/**
 * A temporary directory laid out like a cgroup v1 or v2 hierarchy, with the kernel's behaviour the
 * layout code depends on: mkdir creates the control files, rmdir refuses a cgroup with processes,
 * writing a pid to cgroup.procs moves it there, cgroup.subtree_control takes `+controller` and refuses
 * (EBUSY) a non-root cgroup with processes, cgroup.kill empties a cgroup.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { realCgroupIo, type CgroupIo, type CgroupVersion } from '../../../src/vos/container/cgroups.js';

const V1_FILES: Record<string, string> = {
  'cgroup.procs': '',
  'cpu.cfs_period_us': '100000',
  'cpu.cfs_quota_us': '-1',
  'cpu.stat': 'nr_periods 0\nnr_throttled 0\nthrottled_time 0\n',
  'cpuacct.usage': '0',
  'memory.limit_in_bytes': '9223372036854771712',
  'memory.memsw.limit_in_bytes': '9223372036854771712',
  'memory.usage_in_bytes': '0',
  'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
  'pids.max': 'max',
  'pids.current': '0',
  'pids.events': 'max 0\n',
};

const V2_FILES: Record<string, string> = {
  'cgroup.procs': '',
  'cgroup.subtree_control': '',
  'cgroup.events': 'populated 0\nfrozen 0\n',
  'cgroup.kill': '',
  'cpu.max': 'max 100000',
  'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
  'memory.max': 'max',
  'memory.swap.max': 'max',
  'memory.current': '0',
  'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
  'pids.max': 'max',
  'pids.current': '0',
  'pids.events': 'max 0\n',
};

const errno = (code: string, path: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: ${path}`), { code });

export class FakeCgroupFs {
  readonly root = mkdtempSync(join(tmpdir(), 'dvs-fake-cgroup-'));
  /** Files a new v1 cgroup lacks (an older kernel, no swap accounting). */
  readonly omit = new Set<string>();
  /** The v2 cgroups (paths below root) that are the hierarchy's root, where internal processes are allowed. */
  private readonly v2Roots = new Set<string>();

  constructor(readonly version: CgroupVersion) {}

  /** The real path of a path as the code sees it (mount points are prefixed by `root`). */
  path(p: string): string {
    return p.startsWith(this.root) ? p : join(this.root, p);
  }

  /** Makes a cgroup directory with its control files, as the kernel would (mkdir -p for the mount's own). */
  cgroup(p: string, opts: { controllers?: string; hierarchyRoot?: boolean; procs?: number[] } = {}): string {
    const dir = this.path(p);
    mkdirSync(dir, { recursive: true });
    this.populate(dir);
    if (opts.controllers !== undefined) writeFileSync(join(dir, 'cgroup.controllers'), opts.controllers);
    if (opts.hierarchyRoot) this.v2Roots.add(dir);
    if (opts.procs) writeFileSync(join(dir, 'cgroup.procs'), opts.procs.map((p) => `${p}\n`).join(''));
    return dir;
  }

  read(p: string): string {
    return readFileSync(this.path(p), 'utf8');
  }

  write(p: string, text: string): void {
    writeFileSync(this.path(p), text);
  }

  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  private populate(dir: string): void {
    const files = this.version === 'v1' ? V1_FILES : V2_FILES;
    for (const [name, text] of Object.entries(files)) if (!this.omit.has(name) && !existsSync(join(dir, name))) writeFileSync(join(dir, name), text);
    if (this.version === 'v2' && !existsSync(join(dir, 'cgroup.controllers'))) {
      const parent = posix.dirname(dir);
      const inherited = existsSync(join(parent, 'cgroup.subtree_control')) ? readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8') : '';
      writeFileSync(join(dir, 'cgroup.controllers'), inherited);
    }
  }

  private procsOf(dir: string): string[] {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
  }

  /** Every cgroup directory of the tree. */
  private allCgroups(dir = this.root): string[] {
    const out: string[] = [];
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) out.push(...(existsSync(join(p, 'cgroup.procs')) ? [p] : []), ...this.allCgroups(p));
    }
    return out;
  }

  /** The CgroupIo over this tree, with the kernel's semantics for the special files. */
  readonly io: CgroupIo = {
    ...realCgroupIo,
    mkdir: async (path) => {
      await realCgroupIo.mkdir(path);
      this.populate(path);
    },
    rmdir: (path) => {
      if (!existsSync(path)) return Promise.reject(errno('ENOENT', path));
      if (this.procsOf(path).length > 0) return Promise.reject(errno('EBUSY', path));
      rmSync(path, { recursive: true });
      return Promise.resolve();
    },
    writeFile: async (path, data) => {
      const dir = posix.dirname(path);
      const name = posix.basename(path);
      if (name === 'cgroup.procs') {
        // A process is in one cgroup per hierarchy: v1 has one hierarchy per mount, v2 one in all.
        const hierarchy = this.version === 'v2' ? this.root : join(this.root, 'sys/fs/cgroup', posix.relative(join(this.root, 'sys/fs/cgroup'), dir).split('/')[0]!);
        for (const cg of [...(existsSync(join(hierarchy, 'cgroup.procs')) ? [hierarchy] : []), ...this.allCgroups(hierarchy)]) writeFileSync(join(cg, 'cgroup.procs'), this.procsOf(cg).filter((p) => p !== data.trim()).map((p) => `${p}\n`).join(''));
        writeFileSync(path, [...this.procsOf(dir), data.trim()].map((p) => `${p}\n`).join(''));
      } else if (name === 'cgroup.subtree_control') {
        if (!this.v2Roots.has(dir) && this.procsOf(dir).length > 0) throw errno('EBUSY', path);
        const on = new Set(readFileSync(path, 'utf8').split(/\s+/).filter(Boolean));
        const available = readFileSync(join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/);
        for (const word of data.split(/\s+/).filter(Boolean)) {
          if (!available.includes(word.slice(1))) throw errno('ENOENT', path);
          if (word.startsWith('+')) on.add(word.slice(1));
          else on.delete(word.slice(1));
        }
        writeFileSync(path, [...on].join(' '));
      } else if (name === 'cgroup.kill') writeFileSync(join(dir, 'cgroup.procs'), '');
      else await realCgroupIo.writeFile(path, data);
    },
  };
}

/** A mountinfo line for a cgroup file system. */
export function mountLine(id: number, mountPoint: string, fstype: 'cgroup' | 'cgroup2', superOpts: string, root = '/'): string {
  return `${id} 25 0:${id} ${root} ${mountPoint} rw,nosuid,nodev,noexec,relatime shared:${id} - ${fstype} ${fstype} ${superOpts}`;
}
