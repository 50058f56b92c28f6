#!/usr/bin/env node
/**
 * A service module as an OS process of its own: the multiserver shape of a VOS server
 * (docs/vos/boot.md), or any service an operator runs with `dvs run`. The same module runs as a
 * coroutine in a daemon; here its M3-IPC handle is the client library's, bound at DVS_SLOT of
 * DVS_DC through the daemon at DVS_SOCKET. It moves like a coroutine service: its snapshot hook
 * answers the daemon's snapshot request, its restore hook gets the state the bind brought, and
 * once its endpoint moved away this incarnation is retired and the process exits 0.
 *
 *   node service-program.js <module> (factory arguments: JSON in DVS_SERVICE_ARGS)
 */
import { isDvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { loadServiceFactory } from '../services/service-module.js';
import { ServiceRunner } from '../services/service-runner.js';
import { connect } from './client.js';

function intEnv(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${v}`);
  return n;
}

async function main(): Promise<number> {
  const module = process.argv[2];
  if (module === undefined) throw new Error('usage: service-program <module>  (args: JSON in DVS_SERVICE_ARGS)');
  const socketPath = process.env.DVS_SOCKET;
  const tokenPath = process.env.DVS_TOKEN_FILE;
  const dcid = intEnv('DVS_DC');
  if (socketPath === undefined || tokenPath === undefined || dcid === undefined) throw new Error('DVS_SOCKET, DVS_TOKEN_FILE and DVS_DC must be set (the daemon sets them for its programs)');
  const args = (process.env.DVS_SERVICE_ARGS === undefined ? null : JSON.parse(process.env.DVS_SERVICE_ARGS)) as Payload;
  const slot = intEnv('DVS_SLOT');
  const name = process.env.DVS_NAME;
  const factory = await loadServiceFactory(module);
  const service = await factory(args);

  const client = await connect({ socketPath, tokenPath, name: (name ?? 'service').slice(0, 32) });
  // The runner exists once bound; a move announced before that has nothing to retire.
  const held: { runner?: ServiceRunner } = {};
  let settle!: (code: number) => void;
  const done = new Promise<number>((resolve) => (settle = resolve));
  const p = await client.bind(dcid, {
    ...(slot === undefined ? {} : { slot }),
    ...(name === undefined ? {} : { name }),
    onMoved: () => {
      held.runner?.retire();
      settle(0);
    },
  });
  if (p.restored !== undefined) {
    if (service.restore === undefined) throw new Error(`service ${module} has state to restore but no restore hook`);
    await service.restore(p.restored);
  }
  const r = new ServiceRunner(p, service, {
    dcid,
    endpoint: p.endpoint,
    node: intEnv('DVS_NODE') ?? -1,
    migrated: p.migrated,
    onEnd: (err) => {
      if (err !== undefined) process.stderr.write(`service ${module} failed: ${err instanceof Error ? err.message : String(err)}\n`);
      settle(err === undefined ? 0 : 1);
    },
  });
  held.runner = r;
  p.onSnapshot(() => r.snapshot());
  const stop = (): void => {
    void r
      .stopGracefully()
      .then(() => {
        r.retire();
        return p.unbind();
      })
      .catch(() => undefined)
      .then(() => settle(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  r.start();
  const code = await done;
  await client.close().catch((err: unknown) => (isDvsError(err) ? undefined : Promise.reject(err as Error)));
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`service-program: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
