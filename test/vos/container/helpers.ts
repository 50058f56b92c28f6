/** Shared by the real-container tests: running a program to its end, a logger that keeps warnings, cleanup that leaves nothing. */
import { readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../../src/runtime/logger.js';
import { detectCgroups, pollUntil } from '../../../src/vos/container/cgroups.js';
import { DcContainer, type DcContainerOptions, type DcExit, type DcSpawnOptions } from '../../../src/vos/container/container.js';

/** Real containers need root; without it every real test asserts the fallback instead. */
export const ROOT = process.getuid?.() === 0;

/** Cgroup names of this test process: apart from other test files and any daemon on the host. */
export const PREFIX = `dvs-t${process.pid}-`;

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly obj: object;
  readonly msg: string | undefined;
}

export function captureLogger(): { logger: Logger; lines: LogLine[]; warnings: () => LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines, warnings: () => lines.filter((l) => l.level === 'warn') };
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exit: DcExit;
}

/** Runs a program in the DC to its end (killed at the deadline), with its output. */
export async function run(c: DcContainer, program: string, args: readonly string[] = [], opts: DcSpawnOptions & { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const child = c.spawn(program, args, opts);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (opts.input !== undefined) child.stdin?.end(opts.input);
  else child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  const exit = await child.exit;
  clearTimeout(timer);
  // Let the pipes drain: 'exit' can come before the last data.
  await pollUntil(() => (child.stdout?.readableEnded ?? true) && (child.stderr?.readableEnded ?? true), 2000);
  return { stdout, stderr, exit };
}

/** Whether a host pid is alive (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The containers a test makes, all stopped (and any cgroup of this test process swept away) by cleanup(). */
export class Containers {
  private readonly made: DcContainer[] = [];

  make(opts: Omit<DcContainerOptions, 'node' | 'prefix'> & { node?: number }): DcContainer {
    const c = new DcContainer({ node: 1, prefix: PREFIX, ...opts });
    this.made.push(c);
    return c;
  }

  async cleanup(): Promise<void> {
    for (const c of this.made.splice(0)) await c.stop({ graceMs: 0 }).catch(() => undefined);
    if (!ROOT) return;
    const d = await detectCgroups({ probe: false });
    for (const parent of new Set(Object.values(d.host?.parents ?? {}))) {
      for (const name of readdirSync(parent).filter((n) => n.startsWith(PREFIX))) {
        const dir = join(parent, name);
        await pollUntil(() => {
          const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
          for (const pid of pids) {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              // Gone.
            }
          }
          try {
            rmdirSync(dir);
            return true;
          } catch {
            return false;
          }
        }, 5000, 20);
      }
    }
  }
}
