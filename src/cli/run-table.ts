/** The text form of the runs `dvs ps` lists: one row per run of every node that answered. */
import type { RunInfo } from '../transport/run-spec.js';

/** How a run ended: its exit code, the signal that ended it, or why it never started. */
function outcome(r: RunInfo): string {
  if (r.state === 'running') return '-';
  if (r.exitCode !== undefined) return `code ${r.exitCode}`;
  if (r.signal !== undefined) return r.signal;
  return r.state === 'failed' ? 'not started' : '-';
}

export function formatRunTable(runs: readonly RunInfo[]): string {
  const head = 'node  run    pid      dc   state     outcome      program                              endpoints';
  const rows = runs.map((r) => {
    const command = [r.program, ...r.args].join(' ');
    const endpoints = r.endpoints.map((e) => `${e.dcid}:${e.endpoint}${e.name === '' ? '' : `(${e.name})`}`).join(',');
    return `${String(r.node).padEnd(5)} ${String(r.run).padEnd(6)} ${String(r.pid ?? '-').padEnd(8)} ${String(r.dcid).padEnd(4)} ${r.state.padEnd(9)} ${outcome(r).padEnd(12)} ${command.padEnd(36)} ${endpoints === '' ? '-' : endpoints}`;
  });
  return [head, ...rows].join('\n');
}
