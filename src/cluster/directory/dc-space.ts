/** The endpoint space of a DC: from the cache, or read from the store when the cache has not seen the DC yet. */
import { EndpointSpace } from '../../ipc/endpoint.js';
import type { DirectoryContext } from './context.js';
import { fail } from './failures.js';
import { parseDc } from './parse.js';

export async function dcSpace(ctx: DirectoryContext, dcid: number): Promise<EndpointSpace> {
  const cached = ctx.cache.state(dcid)?.space;
  if (cached !== undefined) return cached;
  const kv = await ctx.store.get(ctx.keys.dc(dcid));
  const rec = kv === undefined ? undefined : parseDc(kv.value, dcid);
  if (rec === undefined) fail('EDVSBADDCID', `DC ${dcid} does not exist`, { dcid });
  return new EndpointSpace(rec.limits);
}
