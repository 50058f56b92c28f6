/** `npm run bench -- <suite|all> [--json] [--scale f]`: runs benchmark suites; see harness.ts for the output convention. */
import { Command } from 'commander';
import { daemonEnv } from '../src/cli/daemon-env.js';
import type { BenchResult, Suite } from './harness.js';
import { clusterSuite } from './suites/cluster.js';
import { ipcSuite } from './suites/ipc.js';
import { kernelSuite } from './suites/kernel.js';
import { migrationSuite } from './suites/migration.js';
import { replicationSuite } from './suites/replication.js';
import { vosSuite } from './suites/vos.js';
import { webSuite } from './suites/web.js';

const SUITES: readonly Suite[] = [kernelSuite, ipcSuite, clusterSuite, migrationSuite, vosSuite, webSuite, replicationSuite];

// Every process the suites start (daemons and raw baselines alike) runs with the malloc settings
// `dvs cluster up` gives daemons; this process itself started without them.
Object.assign(process.env, daemonEnv());

function printTable(results: readonly BenchResult[]): void {
  const rows = results.map((r) => [r.suite, r.case, `${r.value} ${r.unit}`, r.baseline === undefined ? '' : `${r.baseline} ${r.unit}`, r.slowdown === undefined ? '' : `x${r.slowdown}`]);
  const head = ['suite', 'case', 'ours', 'baseline', 'slowdown'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

const program = new Command()
  .name('bench')
  .argument('[suite]', `one of: ${SUITES.map((s) => s.name).join(', ')}, all`, 'all')
  .option('--json', 'one JSON object per line')
  .option('--scale <factor>', 'scale iteration counts', '1')
  .action(async (name: string, opts: { json?: boolean; scale: string }) => {
    const chosen = name === 'all' ? SUITES : SUITES.filter((s) => s.name === name);
    if (chosen.length === 0) {
      console.error(`unknown suite ${name}; known: ${SUITES.map((s) => s.name).join(', ')}`);
      process.exitCode = 2;
      return;
    }
    const scale = Number(opts.scale);
    for (const suite of chosen) {
      const results = await suite.run({ scale: Number.isFinite(scale) && scale > 0 ? scale : 1 });
      if (opts.json === true) for (const r of results) console.log(JSON.stringify(r));
      else printTable(results);
    }
  });

await program.parseAsync();
