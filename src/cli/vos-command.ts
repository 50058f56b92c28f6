/**
 * `dvs vos up|down|status`: boots a VOS on a DC from a spec file, stops it, shows where its servers
 * run (docs/vos/boot.md). Booting writes the VOS record into the directory; every node daemon of
 * the DC starts its share, and `up` waits until each placed server is bound.
 */
import { readFile } from 'node:fs/promises';
import type { Directory } from '../cluster/directory.js';
import { DvsError } from '../ipc/errors.js';
import type { Payload } from '../ipc/payload.js';
import { parseVosSpec } from '../vos/spec.js';
import { makeVosRecord } from '../vos/vos-record.js';
import { vosView, type VosView } from '../vos/vos-view.js';
import { withDirectory, type ReachOptions } from './admin.js';
import { DEFAULT_TIMEOUT_MS } from './reach.js';

/** Resolves once `ready()` holds, checked at every directory event; EDVSTIMEDOUT (with `what`) after `timeoutMs`. */
function untilDirectory(d: Directory, ready: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const offs: (() => void)[] = [];
    const done = (err?: Error): void => {
      clearTimeout(timer);
      for (const off of offs) off();
      if (err === undefined) resolve();
      else reject(err);
    };
    const check = (): void => {
      if (ready()) done();
    };
    const timer = setTimeout(() => done(new DvsError('EDVSTIMEDOUT', `${what()} within ${timeoutMs} ms`)), timeoutMs);
    offs.push(d.on('endpoint', check), d.on('node', check), d.on('vos', check));
  });
}

/** Servers whose node is live and that are not bound yet. */
function missing(d: Directory, view: VosView): string[] {
  return view.servers.filter((s) => s.endpoint === undefined && d.node(s.node) !== undefined).map((s) => `${s.key} (node ${s.node})`);
}

export interface VosUpOptions extends ReachOptions {
  /** Replace a VOS the DC runs already. */
  readonly replace?: boolean;
}

/** Boots the VOS the spec file describes; resolves with its servers once each is bound. */
export async function vosUp(dir: string, specFile: string, opts: VosUpOptions = {}): Promise<VosView> {
  let text: string;
  try {
    text = await readFile(specFile, 'utf8');
  } catch (err) {
    throw new DvsError('EDVSNOENT', `cannot read the VOS spec ${specFile}: ${(err as Error).message}`, { details: { file: specFile } });
  }
  const spec = parseVosSpec(text, specFile);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return withDirectory(
    dir,
    async (d) => {
      const dc = d.dc(spec.dc);
      if (dc === undefined) throw new DvsError('EDVSBADDCID', `DC ${spec.dc} does not exist (dvs dc create ${spec.dc} --nodes …)`, { details: { dcid: spec.dc } });
      const boot = makeVosRecord(text, specFile, dc);
      await d.putVosRecord(dc.dcid, boot.record as unknown as Payload, { replace: opts.replace === true });
      await untilDirectory(d, () => missing(d, vosView(d, dc.dcid)).length === 0, timeoutMs, () => `the VOS of DC ${dc.dcid} did not come up: not bound yet: ${missing(d, vosView(d, dc.dcid)).join(', ')}`);
      return vosView(d, dc.dcid);
    },
    opts,
  );
}

/** Stops the DC's VOS; resolves once none of its servers is bound. EDVSNOENT when it runs none. */
export async function vosDown(dir: string, dcid: number, opts: ReachOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  await withDirectory(
    dir,
    async (d) => {
      const view = vosView(d, dcid);
      await d.removeVosRecord(dcid);
      const bound = (): string[] => view.servers.filter((s) => d.endpointAt(dcid, s.slot) !== undefined).map((s) => s.key);
      await untilDirectory(d, () => bound().length === 0, timeoutMs, () => `the VOS of DC ${dcid} is stopping, but still bound: ${bound().join(', ')}`);
    },
    opts,
  );
}

export function vosStatus(dir: string, dcid: number, opts: ReachOptions = {}): Promise<VosView> {
  return withDirectory(dir, (d) => Promise.resolve(vosView(d, dcid)), opts);
}

export function formatVosView(v: VosView): string {
  const rows = v.servers.map((s) => [s.key, s.shape + (s.host === undefined ? '' : `:${s.host}`), String(s.slot), String(s.node), s.at === undefined ? '-' : String(s.at), s.endpoint === undefined ? 'down' : String(s.endpoint)]);
  const head = ['server', 'shape', 'slot', 'placed', 'node', 'endpoint'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [`VOS of DC ${v.dc} (${v.source}, booted ${new Date(v.bootedAt).toISOString()})`, line(head), ...rows.map(line)].join('\n');
}
