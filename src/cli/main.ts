#!/usr/bin/env node
/** `dvs`: the command line of DVS. Exit codes: exit-codes.ts (docs/deploy.md). */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DvsError, isDvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { formatProcTable } from '../kernel/index.js';
import { addNode, clusterProcesses, clusterStatus, createDc, listDcs, removeDc, removeNode, StatusWithoutStore } from './admin.js';
import { clusterDown, clusterUp } from './cluster.js';
import { defaultClusterDir } from './cluster-files.js';
import { runClusterDemo } from './demo-cluster.js';
import { runDemo } from './demo.js';
import { DEMO_SHAPES, runWebDemo, type DemoShape } from './demo-web.js';
import { fsCopy, fsFsck, fsList, fsMkfs, progressBar, withVosFiles, type FsTarget } from './fs-command.js';
import { EXIT, exitCodeOf } from './exit-codes.js';
import { configFromFlags, runNode, type NodeStartFlags } from './node-start.js';
import { DEFAULT_TIMEOUT_MS } from './reach.js';
import { parseEnvPairs, runOnNode } from './run-command.js';
import { drainNode, formatDrainOutcome, formatMigration, listServices, migrateEndpoint, startService } from './migrate-command.js';
import { formatRunTable } from './run-table.js';
import { formatSelfViews, formatStatus } from './status-table.js';
import { formatVosView, vosDown, vosStatus, vosUp } from './vos-command.js';
import { formatReplicas, replicas } from './replicas-command.js';
import { formatRound, rebalance } from './rebalance-command.js';
import { formatInstanceGroups, listInstanceGroups, removeInstanceGroup, scaleGroup } from './scale-command.js';
import { formatVosPs, vosProcesses, vosRun } from './vos-ps.js';

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function ratio(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a non-negative number');
  return n;
}

/** An endpoint: tasks have negative ones. */
function endpointArg(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('must be an integer');
  return n;
}

function positiveInt(value: string): number {
  const n = int(value);
  if (n === 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function intList(value: string): number[] {
  return value.split(',').map((v) => int(v.trim()));
}

const dirOption = (): Option => new Option('--dir <path>', 'local cluster directory').default(defaultClusterDir(), '$DVS_CLUSTER_DIR or ~/.dvs/local');
const jsonOption = (): Option => new Option('--json', 'machine-readable output');
const timeoutOption = (what = 'the coordination store'): Option =>
  new Option('--timeout <ms>', `how long to wait for ${what} (retrying), then fail with exit code ${EXIT.unreachable}`).argParser(positiveInt).default(DEFAULT_TIMEOUT_MS);

function out(json: boolean | undefined, value: unknown, text: () => string): void {
  console.log(json === true ? JSON.stringify(value, null, 2) : text());
}

// Usage errors come back as a CommanderError (commander has printed them): exit code EXIT.usage.
const program = new Command().name('dvs').description('DVS: a Distributed Virtualization System').version('0.1.0').exitOverride().enablePositionalOptions();

program
  .command('demo')
  .description('boot a local 3-node cluster and the web VOS (NWEB, FS, RDISK on another node) with a sample site; serves until Ctrl-C')
  .addOption(new Option('--shape <shape>', 'where the servers run').choices([...DEMO_SHAPES]).default('unikernel'))
  .option('--port <n>', "NWEB's port (another when it is taken)", int, 8080)
  .option('--scripted', 'instead: the scripted demo (a data-store server and clients across the cluster), which ends by itself')
  .option('--requests <n>', 'scripted: PUT requests each client sends', positiveInt, 1000)
  .option('--bulk-bytes <n>', 'scripted: bytes a client hands over through a grant', positiveInt, 4 * 1024 * 1024)
  .option('--in-process', 'scripted, with two kernels inside this process, linked in memory')
  .action(async (opts: { shape: DemoShape; port: number; scripted?: boolean; requests: number; bulkBytes: number; inProcess?: boolean }) => {
    const log = (line: string): void => console.log(line);
    if (opts.inProcess === true) await runDemo({ requests: opts.requests, bulkBytes: opts.bulkBytes, log });
    else if (opts.scripted === true) await runClusterDemo({ requests: opts.requests, bulkBytes: opts.bulkBytes, log });
    else await runWebDemo({ shape: opts.shape, port: opts.port, log });
  });

const node = program.command('node').description('node daemon');
node
  .command('start')
  .description('run a node daemon (dvsd) in the foreground until SIGTERM')
  .option('--config <file>', 'JSON configuration (see docs/deploy.md); other flags are ignored when given')
  .option('--node-id <n>', 'node id')
  .option('--listen <host:port>', 'link listener', '127.0.0.1:0')
  .option('--data-dir <path>', 'data directory (socket, token, runtime info)')
  .option('--cluster-key-file <path>', 'file holding the cluster key in hex')
  .option('--store <host:port>', 'embedded store address (served here with --serve-store)')
  .option('--serve-store', 'this node serves the embedded store')
  .option('--etcd <urls>', 'use etcd (comma-separated client URLs) as the coordination store')
  .option('--log-level <level>', 'pino log level', 'info')
  .addOption(timeoutOption('the coordination store, unless this node serves it'))
  .action(async (flags: NodeStartFlags & { timeout: number }) => {
    await runNode(configFromFlags(flags), { timeoutMs: flags.timeout });
  });

node
  .command('drain')
  .description('move every movable endpoint off a node before maintenance; reports what could not move and why (exit code 1 then)')
  .argument('<node>', 'node id', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the coordination store and the daemon'))
  .action(async (nodeId: number, opts: { dir: string; json?: boolean; timeout: number }) => {
    const outcomes = await drainNode(opts.dir, nodeId, {
      timeoutMs: opts.timeout,
      onOutcome: (o) => {
        if (opts.json !== true) console.log(formatDrainOutcome(o));
      },
    });
    if (opts.json === true) console.log(JSON.stringify(outcomes, null, 2));
    else console.log(`${outcomes.filter((o) => o.moved).length} moved, ${outcomes.filter((o) => !o.moved).length} stayed on node ${nodeId}`);
    if (outcomes.some((o) => !o.moved)) process.exitCode = EXIT.error;
  });

const cluster = program.command('cluster').description('a local cluster of daemon processes');
cluster
  .command('up')
  .description('start N daemons on loopback, node 0 serving the embedded store')
  .requiredOption('--nodes <n>', 'number of nodes', positiveInt)
  .addOption(dirOption())
  .option('--dead-ms <ms>', 'failure-detection grace', positiveInt, 3000)
  .option('--etcd <urls>', 'use this etcd cluster (comma-separated client URLs) instead of the embedded store')
  .option('--log-level <level>', 'daemon log level', 'info')
  .addOption(jsonOption())
  .action(async (opts: { nodes: number; dir: string; deadMs: number; etcd?: string; logLevel: string; json?: boolean }) => {
    const c = await clusterUp({
      nodes: opts.nodes,
      dir: opts.dir,
      deadMs: opts.deadMs,
      logLevel: opts.logLevel,
      ...(opts.etcd === undefined ? {} : { etcd: opts.etcd.split(',').map((u) => u.trim()) }),
      log: opts.json === true ? undefined : (l) => console.log(l),
    });
    out(opts.json, c, () => `cluster of ${c.nodes.length} nodes up in ${c.dir}`);
  });
cluster
  .command('down')
  .description('stop every daemon of the local cluster')
  .addOption(dirOption())
  .action(async (opts: { dir: string }) => {
    const n = await clusterDown(opts.dir, (l) => console.log(l));
    console.log(`${n} node(s) stopped`);
  });

const dc = program.command('dc').description('distributed containers');
dc.command('create')
  .description('create a DC on a subset of nodes')
  .argument('<dcid>', 'DC id', int)
  .requiredOption('--nodes <list>', 'member node ids, comma-separated', intList)
  .option('--name <name>', 'DC name')
  .option('--nr-procs <n>', 'non-task slots', positiveInt)
  .option('--nr-sys-procs <n>', 'system slots', positiveInt)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (dcid: number, opts: { nodes: number[]; name?: string; nrProcs?: number; nrSysProcs?: number; dir: string; json?: boolean; timeout: number }) => {
    const limits = { ...(opts.nrProcs === undefined ? {} : { nrProcs: opts.nrProcs }), ...(opts.nrSysProcs === undefined ? {} : { nrSysProcs: opts.nrSysProcs }) };
    const r = await createDc(opts.dir, { dcid, nodes: opts.nodes, ...(opts.name === undefined ? {} : { name: opts.name }), limits }, { timeoutMs: opts.timeout });
    out(opts.json, r, () => `DC ${r.dcid} (${r.name}) on nodes ${r.nodes.join(',')}`);
  });
dc.command('ls')
  .description('list DCs')
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (opts: { dir: string; json?: boolean; timeout: number }) => {
    const all = await listDcs(opts.dir, { timeoutMs: opts.timeout });
    out(opts.json, all, () => ['DC  name              nodes        procs  sysprocs', ...all.map((d) => `${String(d.dcid).padEnd(3)} ${d.name.padEnd(17)} ${d.nodes.join(',').padEnd(12)} ${String(d.limits.nrProcs).padStart(5)}  ${String(d.limits.nrSysProcs).padStart(8)}`)].join('\n'));
  });
dc.command('rm')
  .description('destroy a DC on every node')
  .argument('<dcid>', 'DC id', int)
  .addOption(dirOption())
  .addOption(timeoutOption())
  .action(async (dcid: number, opts: { dir: string; timeout: number }) => {
    await removeDc(opts.dir, dcid, { timeoutMs: opts.timeout });
    console.log(`DC ${dcid} removed`);
  });
dc.command('add-node')
  .description('add a node to a DC')
  .argument('<dcid>', 'DC id', int)
  .argument('<node>', 'node id', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (dcid: number, nodeId: number, opts: { dir: string; json?: boolean; timeout: number }) => {
    const r = await addNode(opts.dir, dcid, nodeId, { timeoutMs: opts.timeout });
    out(opts.json, r, () => `DC ${r.dcid} on nodes ${r.nodes.join(',')}`);
  });
dc.command('rm-node')
  .description('remove a node from a DC')
  .argument('<dcid>', 'DC id', int)
  .argument('<node>', 'node id', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (dcid: number, nodeId: number, opts: { dir: string; json?: boolean; timeout: number }) => {
    const r = await removeNode(opts.dir, dcid, nodeId, { timeoutMs: opts.timeout });
    out(opts.json, r, () => `DC ${r.dcid} on nodes ${r.nodes.join(',')}`);
  });

program
  .command('ps')
  .description('the process table across the cluster, and the programs each node runs')
  .option('--dc <dcid>', 'only this DC', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the coordination store and for each daemon'))
  .action(async (opts: { dc?: number; dir: string; json?: boolean; timeout: number }) => {
    const unanswered: string[] = [];
    const found = await clusterProcesses(opts.dir, opts.dc, { timeoutMs: opts.timeout, onUnanswered: (nodeId, err) => unanswered.push(`node ${nodeId}: ${err.message}`) });
    // A DC that runs a VOS: PM's table too (its processes on every node, their state and resource use).
    const vos = opts.dc === undefined ? undefined : await vosProcesses(opts.dir, opts.dc, { timeoutMs: opts.timeout }).catch((err: unknown) => (isDvsError(err, 'EDVSNOENT') ? undefined : Promise.reject(err as Error)));
    const dcid = opts.dc;
    out(opts.json, vos === undefined ? found : { ...found, vos }, () => formatProcTable(found.procs).trimEnd() + (found.runs.length === 0 ? '' : `\n\n${formatRunTable(found.runs)}`) + (vos === undefined || dcid === undefined ? '' : `\n\n${formatVosPs(dcid, vos)}`));
    // The rows of a live daemon that did not answer are missing: say so, and exit accordingly.
    for (const line of unanswered) console.error(`dvs: ${line}`);
    if (unanswered.length > 0) process.exitCode = EXIT.unreachable;
  });

program
  .command('run')
  .description("have a node's daemon start a program (put -- before the program and its arguments)")
  .requiredOption('--dc <dcid>', 'the DC the program works in (DVS_DC)', int)
  .option('--node <n>', 'the node to run it on (required without --vos; with it, default: the least loaded)', int)
  .option('--vos', "start it as a VOS process, through the DC's PM (dvs ps --dc shows it)")
  .option('--slot <slot>', 'the slot it should bind (DVS_SLOT)', int)
  .option('--name <name>', 'its name (DVS_NAME)')
  .option('--cwd <dir>', 'its working directory (default: the daemon\'s)')
  .option('--env <NAME=VALUE>', 'an environment variable for it (repeatable)', collect, [])
  .argument('<program>', 'the program (no shell)')
  .argument('[args...]', 'its arguments')
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the daemon'))
  .action(async (command: string, args: string[], opts: { dc: number; node?: number; vos?: boolean; slot?: number; name?: string; cwd?: string; env: string[]; dir: string; json?: boolean; timeout: number }) => {
    const env = parseEnvPairs(opts.env);
    if (opts.vos === true) {
      if (opts.slot !== undefined || opts.name !== undefined) throw new DvsError('EDVSINVAL', '--slot and --name are for daemon programs, not VOS processes');
      const req = { program: command, args, ...(opts.node === undefined ? {} : { node: opts.node }), ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }), ...(opts.env.length === 0 ? {} : { env }) };
      const v = await vosRun(opts.dir, opts.dc, req, { timeoutMs: opts.timeout });
      out(opts.json, { dcid: opts.dc, ...v }, () => `VOS process ${v.pid} of DC ${opts.dc} on node ${v.node}`);
      return;
    }
    if (opts.node === undefined) throw new DvsError('EDVSINVAL', '--node is required (or --vos, to let PM choose)');
    const spec = {
      dcid: opts.dc,
      program: command,
      args,
      ...(opts.slot === undefined ? {} : { slot: opts.slot }),
      ...(opts.name === undefined ? {} : { name: opts.name }),
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      ...(opts.env.length === 0 ? {} : { env }),
    };
    const r = await runOnNode(opts.dir, opts.node, spec, { timeoutMs: opts.timeout });
    out(opts.json, r, () => `run ${r.run} on node ${r.node}: pid ${r.pid ?? '-'}`);
  });

program
  .command('migrate')
  .description('move an endpoint to another node while its clients keep calling (docs/migration.md)')
  .requiredOption('--dc <dcid>', 'its DC', int)
  .requiredOption('--ep <endpoint>', 'the endpoint', endpointArg)
  .requiredOption('--to <node>', 'the node to move it to', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the coordination store and the daemon'))
  .action(async (opts: { dc: number; ep: number; to: number; dir: string; json?: boolean; timeout: number }) => {
    const r = await migrateEndpoint(opts.dir, opts.dc, opts.ep, opts.to, {
      timeoutMs: opts.timeout,
      onStart: (from) => {
        if (opts.json !== true) console.log(`moving endpoint ${opts.ep} of DC ${opts.dc} from node ${from} to node ${opts.to}...`);
      },
    });
    out(opts.json, r, () => formatMigration(r));
  });

const service = program.command('service').description('coroutine services hosted by daemons');
service
  .command('start')
  .description("start the service an ES module exports (default export or createService) in a node's daemon")
  .requiredOption('--dc <dcid>', 'its DC', int)
  .requiredOption('--node <n>', 'the node whose daemon hosts it', int)
  .requiredOption('--module <file>', 'the module (a path the daemon can read)')
  .option('--slot <slot>', 'the slot it binds', int)
  .option('--name <name>', 'its endpoint name')
  .option('--args <json>', "its factory's argument, as JSON")
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the daemon'))
  .action(async (opts: { dc: number; node: number; module: string; slot?: number; name?: string; args?: string; dir: string; json?: boolean; timeout: number }) => {
    let args: Payload = null;
    try {
      if (opts.args !== undefined) args = JSON.parse(opts.args) as Payload;
    } catch {
      throw new DvsError('EDVSBADVALUE', `--args is not JSON: ${opts.args}`);
    }
    const r = await startService(opts.dir, opts.node, opts.dc, opts.module, { ...(opts.slot === undefined ? {} : { slot: opts.slot }), ...(opts.name === undefined ? {} : { name: opts.name }), args }, { timeoutMs: opts.timeout });
    out(opts.json, r, () => `service ${r.name} on node ${opts.node}: endpoint ${r.endpoint} of DC ${r.dcid}`);
  });
service
  .command('ls')
  .description('the coroutine services every daemon hosts')
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('each daemon'))
  .action(async (opts: { dir: string; json?: boolean; timeout: number }) => {
    const rows = await listServices(opts.dir, { timeoutMs: opts.timeout });
    out(opts.json, rows, () => ['DC  endpoint  node  name              module', ...rows.map((r) => `${String(r.dcid).padEnd(3)} ${String(r.endpoint).padStart(8)}  ${String(r.node).padStart(4)}  ${r.name.padEnd(17)} ${r.module}`)].join('\n'));
  });

const scale = program
  .command('scale')
  .description('instance groups (docs/instances.md): run a stateless service as instances on several nodes behind one endpoint')
  // Its options are its own; those after `ls` or `rm` are theirs.
  .enablePositionalOptions()
  .option('--dc <dcid>', 'its DC', int)
  .option('--slot <slot>', 'the slot of its endpoint', int)
  .option('--nodes <list>', 'the nodes its instances run on, e.g. 0,1,2 (instances start where missing and stop where not listed)', intList)
  .option('--module <file>', 'the service module its instances run (needed for a new group)')
  .option('--name <name>', 'its endpoint name')
  .option('--args <json>', "its factory's argument, as JSON")
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the store and for the instances'))
  .action(async (opts: { dc?: number; slot?: number; nodes?: number[]; module?: string; name?: string; args?: string; dir: string; json?: boolean; timeout: number }) => {
    if (opts.dc === undefined || opts.slot === undefined || opts.nodes === undefined) throw new DvsError('EDVSINVAL', 'dvs scale needs --dc, --slot and --nodes (or a subcommand: ls, rm)');
    let args: Payload | undefined;
    try {
      if (opts.args !== undefined) args = JSON.parse(opts.args) as Payload;
    } catch {
      throw new DvsError('EDVSBADVALUE', `--args is not JSON: ${opts.args}`);
    }
    const v = await scaleGroup(opts.dir, opts.dc, opts.slot, { nodes: opts.nodes, ...(opts.module === undefined ? {} : { module: opts.module }), ...(opts.name === undefined ? {} : { name: opts.name }), ...(args === undefined ? {} : { args }) }, { timeoutMs: opts.timeout });
    out(opts.json, v, () => formatInstanceGroups([v]));
  });
scale
  .command('ls')
  .description('the instance groups, with what each daemon runs and sent to each member')
  .option('--dc <dcid>', 'only this DC', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('each daemon'))
  .action(async (opts: { dc?: number; dir: string; json?: boolean; timeout: number }) => {
    const groups = await listInstanceGroups(opts.dir, opts.dc, { timeoutMs: opts.timeout });
    out(opts.json, groups, () => formatInstanceGroups(groups));
  });
scale
  .command('rm')
  .description('remove an instance group: every daemon stops its instance')
  .requiredOption('--dc <dcid>', 'its DC', int)
  .requiredOption('--slot <slot>', 'its slot', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (opts: { dc: number; slot: number; dir: string; json?: boolean; timeout: number }) => {
    const removed = await removeInstanceGroup(opts.dir, opts.dc, opts.slot, { timeoutMs: opts.timeout });
    if (!removed) throw new DvsError('EDVSNOENT', `DC ${opts.dc} has no instance group in slot ${opts.slot}`);
    out(opts.json, { dcid: opts.dc, slot: opts.slot, removed }, () => `instance group ${opts.slot} of DC ${opts.dc} removed`);
  });

const vos = program.command('vos').description('the Virtual Operating System of a DC: its system servers (docs/vos/boot.md)');
vos
  .command('up')
  .description('boot a VOS on a DC from a spec file; waits until each server is bound')
  .requiredOption('--spec <file>', 'the VOS spec (JSON, docs/vos/spec.md)')
  .option('--replace', 'replace the VOS the DC runs already')
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the coordination store and for the servers'))
  .action(async (opts: { spec: string; replace?: boolean; dir: string; json?: boolean; timeout: number }) => {
    const v = await vosUp(opts.dir, opts.spec, { timeoutMs: opts.timeout, ...(opts.replace === true ? { replace: true } : {}) });
    out(opts.json, v, () => formatVosView(v));
  });
vos
  .command('down')
  .description("stop a DC's VOS; waits until none of its servers is bound")
  .requiredOption('--dc <dcid>', 'the DC', int)
  .addOption(dirOption())
  .addOption(timeoutOption('the coordination store and for the servers'))
  .action(async (opts: { dc: number; dir: string; timeout: number }) => {
    await vosDown(opts.dir, opts.dc, { timeoutMs: opts.timeout });
    console.log(`the VOS of DC ${opts.dc} is down`);
  });
vos
  .command('status')
  .description("a DC's VOS: each server, its slot, where it is placed and where it runs now")
  .requiredOption('--dc <dcid>', 'the DC', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (opts: { dc: number; dir: string; json?: boolean; timeout: number }) => {
    const v = await vosStatus(opts.dir, opts.dc, { timeoutMs: opts.timeout });
    out(opts.json, v, () => formatVosView(v));
  });


program
  .command('rebalance')
  .description("moves a DC's coroutine services from nodes above the high-water mark to nodes below the low one, by message rate and queue depth (docs/migration.md)")
  .requiredOption('--dc <dcid>', 'the DC', int)
  .option('--high <ratio>', 'a node above this multiple of the mean load sheds services', ratio, 1.25)
  .option('--low <ratio>', 'a node below this multiple of the mean load takes them', ratio, 0.75)
  .option('--max-moves <n>', 'moves per round', positiveInt, 1)
  .option('--rounds <n>', 'rounds to run', positiveInt, 5)
  .option('--interval <ms>', 'how long each round samples the load', positiveInt, 2000)
  .option('--dry-run', 'plan, move nothing')
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (opts: { dc: number; high: number; low: number; maxMoves: number; rounds: number; interval: number; dryRun?: boolean; dir: string; json?: boolean; timeout: number }) => {
    if (!(opts.high > opts.low)) throw new DvsError('EDVSINVAL', `--high (${opts.high}) must be above --low (${opts.low})`);
    const rounds = await rebalance(opts.dir, opts.dc, {
      high: opts.high,
      low: opts.low,
      maxMoves: opts.maxMoves,
      rounds: opts.rounds,
      intervalMs: opts.interval,
      dryRun: opts.dryRun === true,
      timeoutMs: opts.timeout,
      onRound: (r) => {
        if (opts.json !== true) console.log(formatRound(r));
      },
    });
    if (opts.json === true) console.log(JSON.stringify(rounds));
  });

program
  .command('replicas')
  .description("a DC's replica groups: primary, epoch, synchronised members (docs/replication.md)")
  .requiredOption('--dc <dcid>', 'the DC', int)
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption())
  .action(async (opts: { dc: number; dir: string; json?: boolean; timeout: number }) => {
    const g = await replicas(opts.dir, opts.dc, { timeoutMs: opts.timeout });
    out(opts.json, g, () => formatReplicas(g));
  });

program
  .command('cp')
  .description('copy a file into or out of a DC\'s FS (write the DC side dc:/path), through grants as M3FTP did')
  .argument('<from>', 'source: a local path, or dc:/path')
  .argument('<to>', 'destination: dc:/path, or a local path')
  .requiredOption('--dc <dcid>', 'the DC', int)
  .option('--node <n>', 'the node whose daemon carries the copy (default: the first)', int)
  .option('-r, --recursive', 'copy a directory and everything below it')
  .option('--no-progress', 'no progress bar (there is none unless stderr is a terminal)')
  .addOption(dirOption())
  .action(async (from: string, to: string, opts: { dc: number; node?: number; recursive?: boolean; progress: boolean; dir: string }) => {
    const bar = opts.progress && process.stderr.isTTY ? progressBar((s) => process.stderr.write(s)) : undefined;
    const r = await fsCopy({ dir: opts.dir, dcid: opts.dc, ...(opts.node === undefined ? {} : { node: opts.node }) }, from, to, { recursive: opts.recursive === true, ...(bar === undefined ? {} : { onProgress: bar }) });
    const mbs = r.ms > 0 ? r.bytes / (1024 * 1024) / (r.ms / 1000) : 0;
    console.log(`${r.files} file(s), ${r.bytes} bytes in ${r.ms.toFixed(0)} ms (${mbs.toFixed(1)} MiB/s)`);
  });

const fsCmd = program.command('fs').description("a DC's file system: list, read, make and check images (docs/vos/fs.md)");
const fsTarget = (opts: { dc: number; node?: number; dir: string }): FsTarget => ({ dir: opts.dir, dcid: opts.dc, ...(opts.node === undefined ? {} : { node: opts.node }) });
const dcFsCommand = (name: string, description: string): Command =>
  fsCmd
    .command(name)
    .description(description)
    .requiredOption('--dc <dcid>', 'the DC', int)
    .option('--node <n>', 'the node whose daemon carries the calls (default: the first)', int)
    .addOption(dirOption());
dcFsCommand('ls', 'list a directory of the DC\'s FS').argument('[path]', 'the directory', '/').action(async (p: string, opts: { dc: number; node?: number; dir: string }) => {
  for (const line of await withVosFiles(fsTarget(opts), (fs) => fsList(fs, p))) console.log(line);
});
dcFsCommand('cat', 'print a file of the DC\'s FS').argument('<path>', 'the file').action(async (p: string, opts: { dc: number; node?: number; dir: string }) => {
  await withVosFiles(fsTarget(opts), async (fs) => {
    for await (const chunk of fs.createReadStream(p)) process.stdout.write(chunk as Buffer);
  });
});
dcFsCommand('stat', 'the attributes of a file of the DC\'s FS').argument('<path>', 'the file').addOption(jsonOption()).action(async (p: string, opts: { dc: number; node?: number; dir: string; json?: boolean }) => {
  const s = await withVosFiles(fsTarget(opts), (fs) => fs.stat(p));
  const v = { path: p, ino: s.ino, kind: s.kind, mode: `0${(s.mode & 0o7777).toString(8)}`, nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size, mtime: s.mtime.toISOString(), atime: s.atime.toISOString(), ctime: s.ctime.toISOString() };
  out(opts.json, v, () => Object.entries(v).map(([k, x]) => `${k.padEnd(6)} ${String(x)}`).join('\n'));
});
dcFsCommand('mkdir', 'make a directory (and its parents) in the DC\'s FS').argument('<path>', 'the directory').action(async (p: string, opts: { dc: number; node?: number; dir: string }) => {
  await withVosFiles(fsTarget(opts), (fs) => fs.mkdir(p, { recursive: true }));
});
dcFsCommand('rm', 'remove a file, or a directory with -r, from the DC\'s FS').argument('<path>', 'the file').option('-r, --recursive', 'a directory and all below it').action(async (p: string, opts: { dc: number; node?: number; dir: string; recursive?: boolean }) => {
  await withVosFiles(fsTarget(opts), (fs) => fs.rm(p, { recursive: opts.recursive === true }));
});
fsCmd
  .command('mkfs')
  .description('make a new MINIX v3 image file (mkfs.minix -3) for an RDISK')
  .argument('<image>', 'the image file to create')
  .requiredOption('--size <MiB>', 'its size in MiB', positiveInt)
  .option('--inodes <n>', 'inodes (default: mkfs.minix chooses)', positiveInt)
  .action(async (image: string, opts: { size: number; inodes?: number }) => {
    console.log(await fsMkfs(image, opts.size, opts.inodes));
  });
fsCmd
  .command('fsck')
  .description('check an image file (fsck.minix -f); exit code 1 when it has errors')
  .argument('<image>', 'the image file (not served by a running RDISK)')
  .action(async (image: string) => {
    const r = await fsFsck(image);
    console.log(r.report);
    if (!r.clean) throw new DvsError('EDVSIO', `${image} has errors`);
  });

program
  .command('status')
  .description("nodes, their liveness and DCs; each node's own view (registration) from its daemon")
  .addOption(dirOption())
  .addOption(jsonOption())
  .addOption(timeoutOption('the coordination store and for each daemon'))
  .action(async (opts: { dir: string; json?: boolean; timeout: number }) => {
    try {
      const s = await clusterStatus(opts.dir, { timeoutMs: opts.timeout });
      out(opts.json, s, () => formatStatus(s));
    } catch (err) {
      // Without the store, still show what the nodes say of themselves; the command then fails as unreachable.
      if (err instanceof StatusWithoutStore) out(opts.json, { store: null, nodes: err.nodes }, () => formatSelfViews(err.nodes));
      throw err;
    }
  });

// A command whose work ran out with its promise pending would otherwise end silently (code 13).
let finished = false;
process.on('beforeExit', () => {
  if (finished) return;
  console.error('dvs: internal error: the command stopped before finishing (nothing left to wait for)');
  process.exit(EXIT.error);
});
try {
  await program.parseAsync();
} catch (err) {
  // commander printed its own usage errors already.
  if (!(err instanceof CommanderError)) console.error(isDvsError(err) ? `dvs: ${err.message}` : `dvs: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = exitCodeOf(err);
} finally {
  finished = true;
}
