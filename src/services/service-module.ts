/**
 * Service modules (docs/migration.md §1): an ES module whose default export, or `createService`,
 * is the service's factory. Loaded by path wherever the service is to run.
 */
import { pathToFileURL } from 'node:url';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import type { ServiceFactory } from './service.js';

/** The factory an ES module exports: `default`, or `createService`. */
export async function loadServiceFactory(module: string): Promise<ServiceFactory> {
  const mod = await importModule(module);
  const f = mod.default ?? mod.createService;
  if (typeof f !== 'function') throw new DvsError('EDVSNOEXEC', `service module ${module} exports no factory (default or createService)`);
  return f as ServiceFactory;
}

async function importModule(module: string): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(module).href)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DvsError(code === 'ERR_MODULE_NOT_FOUND' ? 'EDVSNOENT' : 'EDVSNOEXEC', `cannot load service module ${module}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A replicated service's factory: the module's `createReplicatedService` export. */
export type ReplicatedServiceFactory = (args: Payload) => unknown;

/** The `createReplicatedService` export of the ES module at `module` (EDVSNOEXEC without one). */
export async function loadReplicatedFactory(module: string): Promise<ReplicatedServiceFactory> {
  const f = (await importModule(module)).createReplicatedService;
  if (typeof f !== 'function') throw new DvsError('EDVSNOEXEC', `service module ${module} exports no createReplicatedService: it cannot run as a replica group`);
  return f as ReplicatedServiceFactory;
}
