/**
 * One daemon per data directory. `<dataDir>/dvsd.lock` holds the owner's pid, created exclusively
 * (O_EXCL): a second daemon started on the same directory by mistake would otherwise share the
 * process socket path and, on node 0, append to the same store log. A lock whose process is gone
 * (a crash, SIGKILL; a zombie counts as gone) is taken over.
 */
import { readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DvsError } from '../ipc/errors.js';

/**
 * Whether process `pid` runs. A zombie (exited, not yet reaped: under a container's PID 1 that can
 * last seconds, or forever) does not, although signals to it still succeed.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ...", comm may hold spaces or parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (not Linux): the signal test is all there is
  }
}

/** Takes the directory's lock; EDVSADDRINUSE while a live process holds it. Returns the lock file. */
export async function lockDataDir(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'dvsd.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return file;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new DvsError('EDVSIO', `cannot create ${file}: ${(err as Error).message}`, { cause: err });
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && processAlive(pid)) {
      const who = pid === process.pid ? 'another daemon of this process' : `process ${pid}`;
      throw new DvsError('EDVSADDRINUSE', `data directory ${dataDir} is in use by ${who} (remove ${file} if that is not a dvs daemon)`, { details: { pid } });
    }
    // Its owner is gone: take it over (another starter racing us loses on the exclusive create).
    await rm(file, { force: true });
  }
  throw new DvsError('EDVSADDRINUSE', `could not take the lock of data directory ${dataDir}`);
}

/** Drops the lock if it is still ours. */
export async function unlockDataDir(file: string): Promise<void> {
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  if (pid === process.pid) await rm(file, { force: true });
}
