/**
 * The requests of the process protocol that run programs (docs/protocol.md, "Running programs"):
 * `run`, `runs` and `stop`, served by the daemon's supervisor (supervisor.ts).
 */
import { DvsError } from '../ipc/errors.js';
import type { Fields } from '../transport/proc-protocol.js';
import { readRunSpec, readStop, type RunInfo, type RunSpec } from '../transport/run-spec.js';
import type { OpHost } from './proc-op-host.js';

/** What the run requests use of the daemon's supervisor. */
export interface RunHost {
  start(spec: RunSpec): Promise<RunInfo>;
  list(): RunInfo[];
  stop(run: number, signal: NodeJS.Signals): Promise<RunInfo>;
}

function hostOf(c: OpHost): RunHost {
  const host = c.ctx.runs;
  if (host === undefined) throw new DvsError('EDVSNOSYS', 'this daemon runs no programs');
  return host;
}

export function runProgram(c: OpHost, f: Fields, id: number): unknown {
  const host = hostOf(c);
  const spec = readRunSpec(f, c.ctx.defaultDcid);
  if (!c.ctx.kernel.listDcs().some((d) => d.dcid === spec.dcid)) throw new DvsError('EDVSBADDCID', `node ${c.ctx.kernel.nodeId} does not run DC ${spec.dcid}`, { details: { field: 'dcid', dcid: spec.dcid } });
  return c.tracked(id, host.start(spec));
}

export function listRuns(c: OpHost): unknown {
  return hostOf(c).list();
}

export function stopRun(c: OpHost, f: Fields, id: number): unknown {
  const host = hostOf(c);
  const { run, signal } = readStop(f);
  return c.tracked(id, host.stop(run, signal));
}
