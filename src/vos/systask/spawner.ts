/**
 * What SYSTASK needs of a DC's container on its node: start it, spawn a program in it, read its
 * usage, stop it. `containerSpawner` is the real one over DcContainer (src/vos/container/); a unit
 * test may give a fake.
 */
import type { StdioOptions } from 'node:child_process';
import type { CgroupLimits } from '../container/cgroups.js';
import { DcContainer, type DcExit } from '../container/container.js';
import type { Logger } from '../../runtime/logger.js';

export interface SpawnedChild {
  /** The host pid of what was started (nsenter with namespaces); undefined when it could not start. */
  readonly pid?: number | undefined;
  /** The program's own host pid once it runs (undefined if it ended first). */
  program(timeoutMs?: number): Promise<{ readonly hostPid: number } | undefined>;
  /** Signals the program; false when it is gone. */
  kill(signal: NodeJS.Signals): boolean;
  /** Resolves once, when it ended; never rejects. */
  readonly exit: Promise<DcExit>;
}

export interface ContainerUsage {
  readonly memoryBytes?: number;
  readonly pids?: number;
  readonly cpuMs?: number;
}

export interface Spawner {
  /** Makes the container (called once, before the first spawn); returns its kind ('container', 'plain', ...). */
  start(): Promise<string>;
  spawn(program: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; cwd: string; stdio: StdioOptions }): SpawnedChild;
  usage(): Promise<ContainerUsage>;
  /** Kills everything it started and removes the container; idempotent. */
  stop(): Promise<void>;
}

export interface ContainerSpawnerOptions {
  readonly dcid: number;
  readonly node: number;
  readonly limits?: CgroupLimits;
  readonly isolation?: 'auto' | 'plain';
  /** Cgroup name prefix (default `dvs-`): tests give a unique one. */
  readonly prefix?: string;
  readonly logger?: Logger;
}

/** The real spawner: one DcContainer for the DC on this node. */
export function containerSpawner(o: ContainerSpawnerOptions): Spawner {
  const c = new DcContainer({
    dcid: o.dcid,
    node: o.node,
    ...(o.limits !== undefined ? { limits: o.limits } : {}),
    ...(o.isolation !== undefined ? { isolation: o.isolation } : {}),
    ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
    ...(o.logger !== undefined ? { logger: o.logger } : {}),
    // A cgroup of the same name left by an earlier SYSTASK of this node (it crashed) is emptied.
    replace: true,
  });
  return {
    start: async () => (await c.start()).kind,
    spawn: (program, args, opts) => c.spawn(program, args, opts),
    usage: async () => {
      const u = await c.usage();
      return { memoryBytes: u.memoryBytes, pids: u.pids, cpuMs: Math.round(u.cpuSeconds * 1000) };
    },
    stop: () => c.stop({ graceMs: 500 }),
  };
}
