/**
 * A daemon frozen (SIGSTOP) while a client on another node calls a server on it: the call's
 * timeout fires, but whether the server took the message is unknowable until the frozen node is
 * declared down, so the daemon answers then (EDVSNOTCONN), within the `settleMs` it announced in
 * hello; the client library waits for that answer instead of inventing a timeout of its own.
 * Thawed, the node serves again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { connect, type DvsClient } from '../../src/client/index.js';
import { isDvsError } from '../../src/ipc/errors.js';
import { eventually, startActor, startCluster, type TestCluster } from './helpers.js';

let tc: TestCluster;
let client: DvsClient | undefined;
let frozenPid: number | undefined;

beforeAll(async () => {
  tc = await startCluster(2);
  await createDc(tc.dir, { dcid: 1, name: 'main', nodes: [0, 1] });
}, 60_000);

afterAll(async () => {
  if (frozenPid !== undefined) process.kill(frozenPid, 'SIGCONT');
  await client?.close();
  await tc?.stop();
}, 30_000);

it('answers a call to a frozen node once the node is declared down, and the client waits for that answer', async () => {
  const server = startActor(tc.runtime(1), 'echo-server', { dcid: 1, slot: 5 });
  const { endpoint } = await server.ready;
  const r = tc.runtime(0);
  // A local guard much shorter than failure detection (1.5 s here): only settleMs keeps it from firing first.
  client = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'frozen-test', localGraceMs: 300 });
  expect(client.info.settleMs).toBe(1500);
  const me = await client.bind(1, { name: 'caller' });
  await eventually(() => me.sendrec(endpoint, { type: 1, payload: 'warm' }, { timeoutMs: 2000 }).then((m) => m.source));

  frozenPid = tc.runtime(1).pid;
  process.kill(frozenPid, 'SIGSTOP');
  const t0 = Date.now();
  const err = await me.sendrec(endpoint, { type: 1, payload: 'frozen' }, { timeoutMs: 200 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  const took = Date.now() - t0;
  expect(isDvsError(err) ? err.code : err).toBe('EDVSNOTCONN');
  // Not before the timeout, and bounded by failure detection plus slack: never a hang.
  expect(took).toBeGreaterThanOrEqual(200);
  expect(took).toBeLessThan(15_000);

  process.kill(frozenPid, 'SIGCONT');
  frozenPid = undefined;
  // Thawed, it reconnects and serves again (a new incarnation of the server if its lease ran out meanwhile).
  const answered = await eventually(async () => {
    const ep = await client!.waitForBind(1, endpoint, { timeoutMs: 1000 });
    const m = await me.sendrec(ep, { type: 1, payload: 'thawed' }, { timeoutMs: 1000 });
    return m.payload;
  }, 20_000, 200);
  expect(answered).toMatchObject({ echo: 'thawed' });
  server.kill();
}, 60_000);
