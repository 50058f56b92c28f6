/** Helpers for migration tests against real daemons: client processes of a moving service, and a watch on its incarnations. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import type { NodeRuntimeInfo } from '../../src/node/daemon.js';
import { startCluster, type TestCluster } from '../node/helpers.js';

const CLIENT = fileURLToPath(new URL('./fixtures/migration-client.mjs', import.meta.url));
export const COUNTER = fileURLToPath(new URL('./fixtures/counter-service.mjs', import.meta.url));

export interface ClientResult {
  readonly calls: number;
  readonly errors: string[];
  readonly bad: unknown[];
}

export interface CallerProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  /** Asks the callers to stop, and resolves with what they saw. */
  finish(): Promise<ClientResult>;
}

/** An OS process with `callers` endpoints on `node`'s daemon, each calling `server` in a loop. */
export function startCallers(node: NodeRuntimeInfo, dcid: number, server: number, callers: number): CallerProcess {
  const child = spawn(process.execPath, [CLIENT, JSON.stringify({ dcid, server, callers })], {
    env: { ...process.env, DVS_SOCKET: node.socket, DVS_TOKEN_PATH: node.token },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let onReady!: () => void;
  let onDone!: (r: ClientResult) => void;
  let onFail!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  const done = new Promise<ClientResult>((res, rej) => {
    onDone = res;
    const prev = onFail;
    onFail = (e) => {
      prev(e);
      rej(e);
    };
  });
  ready.catch(() => undefined);
  done.catch(() => undefined);
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const o = JSON.parse(line) as Record<string, unknown>;
    if (o.ready === true) onReady();
    if (o.done === true) onDone(o as unknown as ClientResult);
  });
  child.once('exit', (code, signal) => onFail(new Error(`callers exited (${code ?? signal}) early; stderr: ${stderr}`)));
  return {
    child,
    ready,
    finish: () => {
      child.stdin!.write('stop\n');
      return done;
    },
  };
}

/**
 * Samples every node's process table while a test runs: `max` is 2 once a round of reads proves two
 * live incarnations at one instant (at most one may live at a time), else 1 while it is bound.
 */
export class IncarnationWatch {
  max = 0;
  samples = 0;
  private stopped = false;
  private readonly loop: Promise<void>;
  private readonly clients: DvsClient[] = [];

  private constructor(
    private readonly dcid: number,
    private readonly endpoint: number,
    clients: DvsClient[],
  ) {
    this.clients = clients;
    this.loop = this.run();
  }

  static async start(nodes: readonly NodeRuntimeInfo[], dcid: number, endpoint: number): Promise<IncarnationWatch> {
    const clients = await Promise.all(nodes.map((n) => connect({ socketPath: n.socket, tokenPath: n.token, name: 'incarnation-watch' })));
    return new IncarnationWatch(dcid, endpoint, clients);
  }

  private async run(): Promise<void> {
    for (let i = 0; i < 100_000 && !this.stopped; i++) {
      // One node after the other: a table answered later describes a later instant. Two local rows
      // prove two live incarnations when they share an epoch, or when the older epoch was still
      // local after the newer one was seen (the drain precedes the absorb); the older seen first and
      // the newer after is a handoff between the two reads.
      const epochs: number[] = [];
      for (const c of this.clients) {
        const rows = await c.procs(this.dcid).catch(() => []);
        const row = rows.find((r) => r.endpoint === this.endpoint && r.kind === 'local');
        if (row !== undefined) epochs.push(row.epoch);
      }
      const overlap = epochs.some((e, i) => epochs.slice(i + 1).some((later) => later <= e));
      this.max = Math.max(this.max, overlap ? 2 : epochs.length > 0 ? 1 : 0);
      this.samples++;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await Promise.all(this.clients.map((c) => c.close()));
  }
}

export interface SharedCluster {
  /** The cluster, once beforeAll started it. */
  readonly tc: TestCluster;
  /** A client of `node`'s daemon, closed after the file's tests. */
  daemon(node: number): Promise<DvsClient>;
}

/** Three real daemons and DC `dcid` on all of them for the tests of one file, stopped after them. */
export function sharedCluster(dcid: number, name: string): SharedCluster {
  let tc: TestCluster | undefined;
  const clients: DvsClient[] = [];
  beforeAll(async () => {
    tc = await startCluster(3);
    await createDc(tc.dir, { dcid, name, nodes: [0, 1, 2] });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tc?.stop();
  }, 30_000);
  const cluster = (): TestCluster => {
    if (tc === undefined) throw new Error('the cluster is not started');
    return tc;
  };
  return {
    get tc() {
      return cluster();
    },
    async daemon(node: number) {
      const r = cluster().runtime(node);
      const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'test' });
      clients.push(c);
      return c;
    },
  };
}
