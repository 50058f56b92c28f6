/**
 * `bind` with an explicit endpoint (slot and generation) through a daemon: honoured when the
 * directory can give exactly that generation, refused with EDVSENDPOINT otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { eventually, startCluster, type TestCluster } from './helpers.js';

let tc: TestCluster;
let client: DvsClient;
const space = new EndpointSpace(resolveDcLimits({}));

beforeAll(async () => {
  tc = await startCluster(2, 1500);
  await createDc(tc.dir, { dcid: 1, name: 'exact', nodes: [0, 1] });
  const r = tc.runtime(1);
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'exact-bind' });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await tc?.stop();
}, 30_000);

describe('bind with an explicit endpoint through a daemon', () => {
  it('binds exactly the endpoint asked for when it is the slot\'s next generation, else refuses it', async () => {
    const first = space.make(0, 11);
    const p = await eventually(() => client.bind(1, { endpoint: first, timeoutMs: 5000 }).catch((err: { code?: string }) => (err.code === 'EDVSBADDCID' ? undefined : Promise.reject(err as Error))));
    expect(p.endpoint).toBe(first);
    await p.unbind();
    // Generation 0 is spent; generation 5 is not the next one; generation 1 is.
    await expect(client.bind(1, { endpoint: first, timeoutMs: 5000 })).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    await expect(client.bind(1, { endpoint: space.make(5, 11), timeoutMs: 5000 })).rejects.toMatchObject({ code: 'EDVSENDPOINT' });
    const again = await eventually(() => client.bind(1, { endpoint: space.make(1, 11), timeoutMs: 5000 }).catch((err: { code?: string }) => (err.code === 'EDVSSLOTUSED' ? undefined : Promise.reject(err as Error))));
    expect(again.endpoint).toBe(space.make(1, 11));
  }, 30_000);
});
