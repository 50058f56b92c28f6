/**
 * Booting a VOS with real daemons: `dvs vos up` writes the record, every node starts its share (a
 * unikernel server as a coroutine of its daemon, a multiserver one as a program of its own), the
 * client library finds the servers from any node, bad specs are refused naming the field, and
 * `dvs vos down` stops everything it started.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { vosDown, vosStatus, vosUp } from '../../src/cli/vos-command.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { Vos, vosLayout } from '../../src/client/vos.js';
import { isDvsError } from '../../src/ipc/errors.js';
import { eventually, startCluster, type TestCluster } from '../node/helpers.js';

let tc: TestCluster;
const clients: DvsClient[] = [];

async function daemon(node: number): Promise<DvsClient> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'boot-test' });
  clients.push(c);
  return c;
}

async function specFile(name: string, spec: unknown): Promise<string> {
  const file = path.join(tc.dir, name);
  await writeFile(file, typeof spec === 'string' ? spec : JSON.stringify(spec));
  return file;
}

beforeAll(async () => {
  tc = await startCluster(3);
  for (const dcid of [1, 2, 3]) await createDc(tc.dir, { dcid, name: `boot${dcid}`, nodes: [0, 1, 2] });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 30_000);

describe('dvs vos up / down', () => {
  it('DS as a unikernel coroutine on node 1 and as its own process on node 2: reachable from every node, then stopped', { timeout: 60_000 }, async () => {
    const uni = await vosUp(tc.dir, await specFile('uni.json', { dc: 1, servers: [{ name: 'ds', node: 1, shape: 'unikernel' }] }), { timeoutMs: 20_000 });
    expect(uni.servers).toMatchObject([{ key: 'ds', slot: 2, node: 1, at: 1 }]);
    const multi = await vosUp(tc.dir, await specFile('multi.json', { dc: 2, servers: [{ name: 'ds', node: 2, slot: 5 }] }), { timeoutMs: 20_000 });
    expect(multi.servers).toMatchObject([{ key: 'ds', slot: 5, node: 2, at: 2, shape: 'multiserver' }]);
    // The multiserver DS is a program the daemon of node 2 runs; the unikernel one is not.
    const runs = await (await daemon(2)).runs();
    expect(runs.filter((r) => r.dcid === 2 && r.state === 'running')).toHaveLength(1);
    expect((await (await daemon(1)).runs()).filter((r) => r.dcid === 1 && r.state === 'running')).toHaveLength(0);

    for (const dcid of [1, 2]) {
      const a = await Vos.open(await daemon(0), { dcid, name: 'pub' });
      const b = await Vos.open(await daemon(2), { dcid, name: 'look' });
      await a.ds((ds) => ds.publish('hello'));
      expect(await b.ds((ds) => ds.lookup('hello'))).toBe(a.process.endpoint);
      await a.close();
      await b.close();
    }

    expect((await vosStatus(tc.dir, 2)).servers[0]).toMatchObject({ key: 'ds', at: 2 });
    await vosDown(tc.dir, 1, { timeoutMs: 10_000 });
    await vosDown(tc.dir, 2, { timeoutMs: 10_000 });
    await expect(vosLayout(await daemon(0), 1)).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    // The program ends with its VOS: it exits once its endpoint is unbound, a moment after.
    const d2 = await daemon(2);
    const after = await eventually(async () => {
      const running = (await d2.runs()).filter((r) => r.dcid === 2 && r.state === 'running');
      return running.length === 0 ? running : undefined;
    }, 10_000, 50);
    expect(after).toHaveLength(0);
  });

  it('refuses bad specs with the field named, a spec for a missing DC, a second boot, and down of a DC without a VOS', { timeout: 30_000 }, async () => {
    await expect(vosUp(tc.dir, await specFile('bad.json', { dc: 3, servers: [{ name: 'ds', node: 1, shap: 'unikernel' }] }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSINVAL') && String((e as Error).message).includes('servers[0].shap'));
    await expect(vosUp(tc.dir, await specFile('far.json', { dc: 3, servers: [{ name: 'ds', node: 7 }] }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSINVAL') && String((e as Error).message).includes('servers[0].node'));
    await expect(vosUp(tc.dir, await specFile('slot.json', { dc: 3, servers: [{ name: 'ds', node: 0, slot: 27 }, { name: 'pm', node: 0, slot: 27 }] }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSINVAL'));
    await expect(vosUp(tc.dir, await specFile('nodc.json', { dc: 9, servers: [{ name: 'ds', node: 0 }] }))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSBADDCID'));
    await expect(vosUp(tc.dir, path.join(tc.dir, 'absent.json'))).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
    const file = await specFile('ok.json', { dc: 3, servers: [{ name: 'ds', node: 0, shape: 'unikernel' }] });
    await vosUp(tc.dir, file, { timeoutMs: 20_000 });
    await expect(vosUp(tc.dir, file)).rejects.toSatisfy((e) => isDvsError(e, 'EDVSEXIST'));
    await vosDown(tc.dir, 3, { timeoutMs: 10_000 });
    await expect(vosDown(tc.dir, 3)).rejects.toSatisfy((e) => isDvsError(e, 'EDVSNOENT'));
  });
});
