/**
 * The Python client (clients/python/dvs_client.py) as real python3 processes against a real
 * ProcServer: examples/python/counter_server.py serves a TS client's sendrecs, gives its state to
 * the daemon's snapshot request while it waits in receiveRequest, leaves when its endpoint moves
 * (the kernel drains it to another node) and exits 0, and a second copy bound on the target with
 * the state as `restored` goes on counting.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { Handover } from '../../src/kernel/mailbox.js';
import type { BindHook } from '../../src/node/proc-server.js';
import { decodeValue, encodeValue } from '../../src/transport/codec.js';
import { DC, SERVER_SLOT, isReceiving, pattern, rowOf, startHarness, until, type Harness } from './helpers.js';

const COUNTER = fileURLToPath(new URL('../../examples/python/counter_server.py', import.meta.url));
const PY_CLIENT_DIR = fileURLToPath(new URL('../../clients/python/', import.meta.url));
const PYTHON = 'python3';

const harnesses: Harness[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const h of harnesses.splice(0)) await h.close();
});

interface PyProc {
  readonly child: ChildProcess;
  /** The n-th JSON line the program printed (0-based). */
  line(n: number): Promise<Record<string, unknown>>;
  readonly exit: Promise<number | null>;
  stderr(): string;
}

function runPython(args: string[], h: Harness, env: Record<string, string> = {}): PyProc {
  const child = spawn(PYTHON, args, { env: { ...process.env, DVS_SOCKET: h.socketPath, DVS_TOKEN_FILE: h.tokenPath, DVS_DC: String(DC), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  const lines: Record<string, unknown>[] = [];
  let waiters: (() => void)[] = [];
  let exited = false;
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
      out = out.slice(nl + 1);
    }
    wake();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      wake();
      resolve(code);
    }),
  );
  return {
    child,
    exit,
    stderr: () => err,
    async line(n) {
      const deadline = Date.now() + 20_000;
      while (lines.length <= n) {
        if (exited) throw new Error(`python exited before line ${n}: ${err}`);
        if (Date.now() > deadline) throw new Error(`no line ${n} from python within 20 s: ${err}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 200);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return lines[n]!;
    },
  };
}

/** A harness whose DC also has node 1 (where the kernel can drain an endpoint to). */
async function node(bind?: BindHook): Promise<Harness> {
  const h = await startHarness(bind === undefined ? {} : { server: { bind } });
  harnesses.push(h);
  h.kernel.addNode(DC, 1);
  return h;
}

async function incs(h: Harness, dst: number, keys: string[]): Promise<unknown[]> {
  const c = await h.connect();
  const cli = await c.bind(DC, { name: 'cli' });
  const counts: unknown[] = [];
  for (const key of keys) counts.push((await cli.sendrec(dst, { type: 1, payload: { op: 'inc', key } }, { timeoutMs: 10_000 })).payload);
  await c.close();
  return counts;
}

describe('the Python client', { timeout: 60_000 }, () => {
  it('python3 is on PATH', () => {
    const r = spawnSync(PYTHON, ['--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/^Python 3\./);
  });

  it('counter_server: counts, gives its state to a snapshot, exits 0 when moved; its copy restored on the target goes on', async () => {
    const a = await node();
    const first = runPython([COUNTER], a, { DVS_SLOT: String(SERVER_SLOT) });
    const ready = await first.line(0);
    expect(ready).toMatchObject({ ready: true, count: 0, restored: false, migrated: false });
    const ep = ready.endpoint as number;
    expect(await incs(a, ep, ['a', 'b', 'c'])).toEqual([1, 2, 3]);

    // The move, as the daemon does it: freeze the route, ask for the state, drain, tell the connection.
    const ka = a.kernel;
    await until(() => isReceiving(ka, ep), 10_000, 'python blocked in receiveRequest');
    const conn = a.server.connectionOf(DC, ep);
    if (conn === undefined) throw new Error('no connection holds the python endpoint');
    expect(ka.freeze(DC, ep, ka.route(DC, ep).epoch + 1, 30_000)).toBe(true);
    const state = await conn.requestSnapshot(DC, ep, 10_000);
    expect(JSON.parse(Buffer.from(state ?? new Uint8Array(0)).toString('utf8'))).toEqual({ count: 3, log: ['a', 'b', 'c'] });
    const handover: Handover = ka.drain(DC, ep, 1);
    expect(conn.endpointMoved(DC, ep, 1, handover.epoch)).toBe(true);
    expect(await first.line(1)).toEqual({ moved: { node: 1, epoch: handover.epoch }, count: 3 });
    expect(await first.exit).toBe(0);
    // Its connection closed without unbinding: the slot routes to node 1 here.
    expect(rowOf(ka, ep)?.kind).toBe('remote');

    // The target node binds the handed-over endpoint with the state as `restored`.
    // Only the moved slot is absorbed; other binds (the TS client's) are ordinary.
    const b = await node((dcid, o) => {
      const kb = harnesses[1]!.kernel;
      if (o.slot !== SERVER_SLOT) return kb.bind(dcid, o.name === undefined ? {} : { name: o.name });
      return { process: kb.absorb(handover, o.name === undefined ? {} : { name: o.name }), restored: state, migrated: true };
    });
    const second = runPython([COUNTER, String(SERVER_SLOT)], b);
    expect(await second.line(0)).toMatchObject({ ready: true, endpoint: ep, count: 3, restored: true, migrated: true });
    expect(await incs(b, ep, ['d', 'e'])).toEqual([4, 5]);
    const again = await b.server.connectionOf(DC, ep)?.requestSnapshot(DC, ep, 10_000);
    expect(JSON.parse(Buffer.from(again ?? new Uint8Array(0)).toString('utf8'))).toEqual({ count: 5, log: ['a', 'b', 'c', 'd', 'e'] });
  });

  it('a state above one frame goes both ways whole: snapshot pieces from python, restored pieces to python', async () => {
    const big = pattern(9 * 1024 * 1024 + 5, 8);
    const script = [
      'import sys, hashlib, json',
      `sys.path.insert(0, ${JSON.stringify(PY_CLIENT_DIR)})`,
      'from dvs_client import Client',
      'c = Client()',
      `p = c.bind(slot=${SERVER_SLOT})`,
      'r = p.restored or b""',
      'p.on_snapshot(lambda: r[::-1])',
      'print(json.dumps({"len": len(r), "sha": hashlib.sha256(r).hexdigest(), "migrated": p.migrated}), flush=True)',
      'try:',
      '    p.receive_request()',
      'except Exception as e:',
      '    print(json.dumps({"error": getattr(e, "code", str(e))}), flush=True)',
    ].join('\n');
    const h = await node((dcid, o) => ({ process: harnesses[0]!.kernel.bind(dcid, o.slot === undefined ? {} : { slot: o.slot }), restored: big, migrated: true }));
    const py = runPython(['-c', script], h);
    const { createHash } = await import('node:crypto');
    expect(await py.line(0)).toEqual({ len: big.byteLength, sha: createHash('sha256').update(big).digest('hex'), migrated: true });
    const kernel = h.kernel;
    const ep = kernel.procs(DC).find((r) => r.kind === 'local')?.endpoint ?? -1;
    await until(() => isReceiving(kernel, ep), 10_000, 'python blocked in receiveRequest');
    const state = await h.server.connectionOf(DC, ep)?.requestSnapshot(DC, ep, 20_000);
    expect(Buffer.from(state ?? new Uint8Array(0)).equals(Buffer.from(big).reverse())).toBe(true);
    kernel.unbind(DC, ep);
    expect(await py.line(1)).toEqual({ error: 'EDVSSHUTDOWN' });
    expect(await py.exit).toBe(0);
  });

  it('a snapshot hook that refuses answers EDVSMIGRATE; without a hook the service is stateless', async () => {
    const script = [
      'import sys, json',
      `sys.path.insert(0, ${JSON.stringify(PY_CLIENT_DIR)})`,
      'from dvs_client import Client, DvsError',
      'c = Client()',
      `p = c.bind(slot=${SERVER_SLOT})`,
      'print(json.dumps({"restored": p.restored is None, "migrated": p.migrated}), flush=True)',
      'for _ in range(2):',
      '    m = p.receive_request()',
      '    if m.payload == "refuse":',
      '        def no(): raise DvsError("EDVSMIGRATE", "busy in a transaction")',
      '        p.on_snapshot(no)',
      '    p.reply(m.source, 0, "ok")',
      'm = p.receive_request()',
    ].join('\n');
    const h = await node();
    const py = runPython(['-c', script], h);
    expect(await py.line(0)).toEqual({ restored: true, migrated: false });
    const kernel = h.kernel;
    const ep = kernel.procs(DC).find((r) => r.kind === 'local')?.endpoint ?? -1;
    await until(() => isReceiving(kernel, ep), 10_000, 'python blocked in receiveRequest');
    const conn = h.server.connectionOf(DC, ep);
    expect(await conn?.requestSnapshot(DC, ep, 10_000)).toBeUndefined();
    const c = await h.connect();
    const cli = await c.bind(DC, { name: 'cli' });
    expect((await cli.sendrec(ep, { type: 1, payload: 'refuse' }, { timeoutMs: 10_000 })).payload).toBe('ok');
    await until(() => isReceiving(kernel, ep), 10_000, 'python blocked again');
    const err = await conn?.requestSnapshot(DC, ep, 10_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'EDVSMIGRATE', errno: -332 });
  });

  it('its MessagePack codec reads every width the reference writes and writes what the reference reads back equal', async () => {
    const big = (n: number): Record<string, number> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    const values: unknown[] = [
      null, true, false, 0, 1, 127, 128, 255, 256, 65_535, 65_536, 0xffffffff, 2 ** 40, Number.MAX_SAFE_INTEGER,
      -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 40), 1.5, -0.25, 1e300,
      '', 'é', 'a'.repeat(31), 'a'.repeat(32), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(70_000),
      Buffer.alloc(0), Buffer.from(pattern(255)), Buffer.from(pattern(256)), Buffer.from(pattern(70_000)),
      [], [1, 'x', null], Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70_000 }, (_, i) => i & 7),
      {}, { a: 1, b: { c: [1, { d: null }] } }, big(16), big(1000),
      { id: 3, ok: true, result: { source: 1, type: 0, payload: { n: 5 } } },
    ];
    const script = [
      'import sys',
      `sys.path.insert(0, ${JSON.stringify(PY_CLIENT_DIR)})`,
      'from dvs_client import unpackb, packb, DvsError',
      'for line in sys.stdin:',
      '    try:',
      '        print(packb(unpackb(bytes.fromhex(line.strip()))).hex(), flush=True)',
      '    except DvsError as e:',
      '        print("ERR " + e.code, flush=True)',
    ].join('\n');
    const h = await node();
    const py = runPython(['-c', script], h);
    const lines: string[] = [];
    let buf = '';
    py.child.stdout!.removeAllListeners('data');
    py.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    // Widths the reference does not write: map32, and ints as int8..int64 / uint64 where it would pick a shorter one.
    const crafted: [string, unknown][] = [
      ['df00000002a16101a16202', { a: 1, b: 2 }],
      ['dd00000001c3', [true]],
      ['d0ff', -1],
      ['d3fffffffffffffffe', -2],
      ['cf0000000000000007', 7],
      ['ca3fc00000', 1.5],
      ['db000000017a', 'z'],
      ['c600000001ff', Buffer.from([255])],
    ];
    const inputs = [...values.map((v) => encodeValue(v).toString('hex')), ...crafted.map(([hex]) => hex), 'd40000', 'd40500', 'c1', '92c0'];
    py.child.stdin!.end(inputs.join('\n') + '\n');
    expect(await py.exit).toBe(0);
    expect(lines).toHaveLength(inputs.length);
    values.forEach((v, i) => expect(decodeValue(Buffer.from(lines[i]!, 'hex')), `value ${i}`).toEqual(v));
    crafted.forEach(([hex, v], i) => expect(decodeValue(Buffer.from(lines[values.length + i]!, 'hex')), hex).toEqual(v));
    // msgpackr's undefined reads as nil; another extension, a reserved byte and a truncated array are clean errors.
    expect(lines.slice(values.length + crafted.length)).toEqual(['c0', 'ERR EDVSBADREQUEST', 'ERR EDVSBADREQUEST', 'ERR EDVSBADREQUEST']);
  });
});
