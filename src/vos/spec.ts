/**
 * The VOS spec file (docs/vos/spec.md): which system servers of a DC run on which node and in which
 * shape. Written by hand, so validated strictly: unknown fields, duplicate keys and misspelt values
 * are errors, and every error is reported at once with the path of its field, so a bad spec is fixed
 * in one pass. `parseVosSpec` gives the spec normalised (defaults filled in, unikernel servers
 * grouped into hosts); `placeVosSpec` lays it out on the DC's actual nodes.
 */
import { DvsError } from '../ipc/errors.js';
import { DEFAULT_DC_LIMITS } from '../ipc/limits.js';
import { JsonTextError, parseJsonText } from './spec-json.js';
import { checkServerOptions, type ServerOptions } from './spec-options.js';

/** The system servers the VOS knows by name. */
export const KNOWN_SERVERS = ['systask', 'pm', 'ds', 'fs', 'rdisk', 'nweb'] as const;
export type KnownServer = (typeof KNOWN_SERVERS)[number];
export type VosShape = 'unikernel' | 'multiserver';

/** Servers that exist once per DC. */
const SINGLETONS: readonly string[] = ['systask', 'pm', 'ds'];
const CUSTOM_PREFIX = 'custom:';
/** The unikernel host of a server that names none. */
export const DEFAULT_HOST = 'vos';
/** Longest spec text read, in characters. */
export const MAX_SPEC_LENGTH = 1024 * 1024;
/** Server slots of a DC with default limits (system slots 0 .. this - 1); the VOS checks a slot against its DC's real limits when it boots. */
export const MAX_SPEC_SLOT = DEFAULT_DC_LIMITS.nrSysProcs - DEFAULT_DC_LIMITS.nrTasks - 1;

const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const TOP_FIELDS = ['dc', 'servers', 'limits'];
const SERVER_FIELDS = ['name', 'node', 'shape', 'host', 'slot', 'options', 'replicas'];
const REPLICA_FIELDS = ['nodes', 'mode', 'quorum', 'leaseMs', 'failoverMs'];
/** Servers that can run as a replica group (a custom module must export createReplicatedService). */
const REPLICABLE: readonly string[] = ['rdisk', 'custom'];
const MAX_REPLICAS = 7;
const LIMIT_FIELDS = ['cpu', 'memoryMB', 'pids'];

export interface VosServer {
  /** As written: a known server's name, or `custom:<module path>`. */
  readonly name: string;
  /** The known server, or 'custom'. */
  readonly server: KnownServer | 'custom';
  /** The module path of a custom server. */
  readonly module?: string;
  /** A node id, or every node of the DC. */
  readonly node: number | 'each';
  readonly shape: VosShape;
  /** The unikernel host it runs in (unikernel servers only). */
  readonly host?: string;
  /** Its system slot, when the spec fixes one. */
  readonly slot?: number;
  /** What it is told at start (spec-options.ts). */
  readonly options?: ServerOptions;
  /** Served by a replica group on these nodes (docs/replication.md); `node` is one of them. */
  readonly replicas?: VosReplicas;
}

export interface VosReplicas {
  readonly nodes: readonly number[];
  readonly mode: 'passive' | 'active';
  /** Active mode: members that applied an update before it is answered (default: all). */
  readonly quorum?: number;
  /** A member's candidacy TTL: how soon a dead primary is replaced (default 3000). */
  readonly leaseMs?: number;
  /** How long callers park for a new primary (default 30000). */
  readonly failoverMs?: number;
}

/** One unikernel host: an OS process holding several servers as coroutines. */
export interface VosHost {
  readonly name: string;
  /** The node of its servers with a fixed node; 'each' when all of them run on every node. */
  readonly node: number | 'each';
  /** Its servers with a fixed node, in spec order. */
  readonly servers: readonly string[];
  /** Its servers with node "each": they join this host on every node (a host of them alone where it has no fixed servers). */
  readonly everyNode: readonly string[];
}

export interface VosLimits {
  /** CPUs (cgroup CPU quota), e.g. 1.5. */
  readonly cpu?: number;
  readonly memoryMB?: number;
  readonly pids?: number;
}

export interface VosSpec {
  readonly dc: number;
  readonly servers: readonly VosServer[];
  readonly hosts: readonly VosHost[];
  readonly limits?: VosLimits;
}

/** One OS process of a placed spec. */
export type VosProcessPlan =
  | { readonly kind: 'unikernel'; readonly node: number; readonly host: string; readonly servers: readonly VosServer[] }
  | { readonly kind: 'multiserver'; readonly node: number; readonly server: VosServer };

type Json = ReturnType<typeof parseJsonText>;

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(source: string, errors: string[], extra: Record<string, unknown> = {}): DvsError {
  const head = errors.length === 1 ? `${source}: invalid VOS spec` : `${source}: invalid VOS spec (${errors.length} errors)`;
  return new DvsError('EDVSINVAL', `${head}:\n  ${errors.join('\n  ')}`, { details: { source, errors, ...extra } });
}

/**
 * Reads a VOS spec from JSON text. Throws one DvsError EDVSINVAL listing every problem (its
 * `details.errors` holds them, each `path: what is wrong`); invalid JSON is reported with `source`
 * and the line and column.
 */
export function parseVosSpec(text: string, source = '<vos spec>'): VosSpec {
  if (typeof text !== 'string') throw invalid(source, [`(document): must be JSON text, got ${typeof text}`]);
  if (text.length > MAX_SPEC_LENGTH) throw invalid(source, [`(document): longer than ${MAX_SPEC_LENGTH} characters`]);
  let doc: Json;
  try {
    doc = parseJsonText(text);
  } catch (err) {
    if (!(err instanceof JsonTextError)) throw err;
    throw new DvsError('EDVSINVAL', `${source}:${err.line}:${err.column}: invalid JSON: ${err.what}`, {
      details: { source, line: err.line, column: err.column, offset: err.offset, errors: [`${source}:${err.line}:${err.column}: ${err.what}`] },
    });
  }
  const errors: string[] = [];
  const spec = checkSpec(doc, errors);
  if (errors.length > 0 || spec === undefined) throw invalid(source, errors);
  return spec;
}

function checkSpec(doc: Json, errors: string[]): VosSpec | undefined {
  const err = (path: string, what: string): void => {
    errors.push(`${path}: ${what}`);
  };
  if (!isObject(doc)) {
    err('(document)', `must be an object with dc and servers, got ${shown(doc)}`);
    return undefined;
  }
  for (const k of Object.keys(doc)) if (!TOP_FIELDS.includes(k)) err(k, `unknown field (fields: ${TOP_FIELDS.join(', ')})`);

  const dc = doc.dc;
  if (dc === undefined) err('dc', 'required: the DC id, an integer in 0..65535');
  else if (typeof dc !== 'number' || !Number.isInteger(dc) || dc < 0 || dc > 0xffff) err('dc', `must be an integer in 0..65535, got ${shown(dc)}`);

  const servers: Placed[] = [];
  const raw = doc.servers;
  if (raw === undefined) err('servers', 'required: a non-empty array of servers');
  else if (!Array.isArray(raw)) err('servers', `must be a non-empty array, got ${shown(raw)}`);
  else if (raw.length === 0) err('servers', 'must not be empty');
  else
    raw.forEach((s, index) => {
      const server = checkServer(s, `servers[${index}]`, err);
      if (server !== undefined) servers.push({ server, index });
    });

  const limits = doc.limits === undefined ? undefined : checkLimits(doc.limits, err);
  const hosts = checkPlacement(servers, err);
  if (errors.length > 0) return undefined;
  const list = servers.map((p) => p.server);
  return limits === undefined ? { dc: dc as number, servers: list, hosts } : { dc: dc as number, servers: list, hosts, limits };
}

/** A valid server entry and its index in the spec's servers array (for error paths). */
interface Placed {
  readonly server: VosServer;
  readonly index: number;
}

function checkServer(s: Json, path: string, err: (path: string, what: string) => void): VosServer | undefined {
  if (!isObject(s)) {
    err(path, `must be an object with name and node, got ${shown(s)}`);
    return undefined;
  }
  let ok = true;
  const bad = (field: string, what: string): void => {
    ok = false;
    err(`${path}.${field}`, what);
  };
  for (const k of Object.keys(s)) if (!SERVER_FIELDS.includes(k)) bad(k, `unknown field (fields: ${SERVER_FIELDS.join(', ')})`);

  let name = '';
  let server: KnownServer | 'custom' = 'custom';
  let module: string | undefined;
  const n = s.name;
  if (typeof n !== 'string') bad('name', n === undefined ? `required: one of ${KNOWN_SERVERS.join(', ')} or "custom:<module path>"` : `must be a string, got ${shown(n)}`);
  else if ((KNOWN_SERVERS as readonly string[]).includes(n)) {
    name = n;
    server = n as KnownServer;
  } else if (n.startsWith(CUSTOM_PREFIX)) {
    module = n.slice(CUSTOM_PREFIX.length);
    if (module.length === 0 || module.trim() !== module) bad('name', `"custom:" must be followed by a module path without surrounding spaces, got ${shown(n)}`);
    name = n;
  } else bad('name', `must be one of ${KNOWN_SERVERS.join(', ')} or "custom:<module path>", got ${shown(n)}`);

  let node: number | 'each' = 'each';
  const nd = s.node;
  if (name === 'systask') {
    if (nd !== undefined && nd !== 'each') bad('node', `systask runs on each node: must be "each" or absent, got ${shown(nd)}`);
  } else if (nd === undefined) bad('node', 'required: a node id (a non-negative integer) or "each"');
  else if (nd === 'each') {
    if (SINGLETONS.includes(name)) bad('node', `${name} runs once per DC: must be a node id, got "each"`);
    node = 'each';
  }
  else if (typeof nd !== 'number' || !Number.isSafeInteger(nd) || nd < 0) bad('node', `must be a non-negative integer or "each", got ${shown(nd)}`);
  else node = nd;

  let shape: VosShape = 'multiserver';
  const sh = s.shape;
  if (sh !== undefined) {
    if (sh === 'unikernel' || sh === 'multiserver') shape = sh;
    else bad('shape', `must be "unikernel" or "multiserver", got ${shown(sh)}`);
  }

  let host: string | undefined;
  const h = s.host;
  if (h !== undefined) {
    if (typeof h !== 'string' || !HOST_RE.test(h)) bad('host', `must be a host name (1..64 of letters, digits, "_", "." and "-", starting with a letter or digit), got ${shown(h)}`);
    else if (shape !== 'unikernel') bad('host', `only a unikernel server runs in a host; this one is ${shape} (set shape "unikernel", or remove host)`);
    else host = h;
  }
  if (shape === 'unikernel' && host === undefined && h === undefined) host = DEFAULT_HOST;

  let slot: number | undefined;
  const sl = s.slot;
  if (sl !== undefined) {
    if (typeof sl !== 'number' || !Number.isInteger(sl) || sl < 0 || sl > MAX_SPEC_SLOT) bad('slot', `must be a system slot, an integer in 0..${MAX_SPEC_SLOT}, got ${shown(sl)}`);
    else if (server === 'systask') bad('slot', 'systask has a fixed task slot on each node; remove slot');
    else if (node === 'each') bad('slot', 'a server on each node cannot share one slot of the DC; give it a node, or remove slot');
    else slot = sl;
  }
  const options = name === '' ? undefined : checkServerOptions(server, s.options, path, (p, what) => {
    ok = false;
    err(p, what);
  });
  const replicas = s.replicas === undefined ? undefined : checkReplicas(s.replicas, `${path}.replicas`, { server, node, shape }, (p, what) => {
    ok = false;
    err(p, what);
  });
  if (!ok) return undefined;
  const out: { -readonly [K in keyof VosServer]: VosServer[K] } = { name, server, node, shape };
  if (replicas !== undefined) out.replicas = replicas;
  if (options !== undefined) out.options = options;
  if (module !== undefined) out.module = module;
  if (host !== undefined) out.host = host;
  if (slot !== undefined) out.slot = slot;
  return out;
}

function checkReplicas(r: Json, path: string, s: { server: KnownServer | 'custom'; node: number | 'each'; shape: VosShape }, err: (path: string, what: string) => void): VosReplicas | undefined {
  if (!isObject(r)) {
    err(path, `must be an object (fields: ${REPLICA_FIELDS.join(', ')}), got ${shown(r)}`);
    return undefined;
  }
  let ok = true;
  const bad = (field: string, what: string): void => {
    ok = false;
    err(field === '' ? path : `${path}.${field}`, what);
  };
  for (const k of Object.keys(r)) if (!REPLICA_FIELDS.includes(k)) bad(k, `unknown field (fields: ${REPLICA_FIELDS.join(', ')})`);
  if (!REPLICABLE.includes(s.server)) bad('', `${s.server} cannot run as a replica group (only ${REPLICABLE.join(' and ')})`);
  if (s.shape !== 'unikernel') bad('', 'a replica group runs in its node daemons: the server needs shape "unikernel"');
  const nodes = r.nodes;
  let list: number[] = [];
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.length > MAX_REPLICAS) bad('nodes', `must be an array of 1..${MAX_REPLICAS} node ids, got ${shown(nodes)}`);
  else if (!nodes.every((n): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) bad('nodes', 'must hold node ids (non-negative integers)');
  else if (new Set(nodes).size !== nodes.length) bad('nodes', 'names a node twice');
  else {
    list = nodes;
    if (s.node !== 'each' && !list.includes(s.node)) bad('nodes', `must include the server's node ${s.node}`);
  }
  const mode = r.mode ?? 'passive';
  if (mode !== 'passive' && mode !== 'active') bad('mode', `must be "passive" or "active", got ${shown(mode)}`);
  const int = (k: 'quorum' | 'leaseMs' | 'failoverMs', min: number, max: number): number | undefined => {
    const v = r[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      bad(k, `must be an integer in ${min}..${max}, got ${shown(v)}`);
      return undefined;
    }
    return v;
  };
  const quorum = int('quorum', 1, Math.max(1, list.length));
  if (quorum !== undefined && mode !== 'active') bad('quorum', 'only an active group has a quorum (a passive primary waits for every synchronised backup)');
  const leaseMs = int('leaseMs', 1000, 60_000);
  const failoverMs = int('failoverMs', 1000, 600_000);
  if (!ok) return undefined;
  return { nodes: list, mode: mode as 'passive' | 'active', ...(quorum === undefined ? {} : { quorum }), ...(leaseMs === undefined ? {} : { leaseMs }), ...(failoverMs === undefined ? {} : { failoverMs }) };
}

function checkLimits(l: Json, err: (path: string, what: string) => void): VosLimits | undefined {
  if (!isObject(l)) {
    err('limits', `must be an object (fields: ${LIMIT_FIELDS.join(', ')}), got ${shown(l)}`);
    return undefined;
  }
  const out: { -readonly [K in keyof VosLimits]: VosLimits[K] } = {};
  for (const k of Object.keys(l)) if (!LIMIT_FIELDS.includes(k)) err(`limits.${k}`, `unknown field (fields: ${LIMIT_FIELDS.join(', ')})`);
  const positive = (k: 'cpu' | 'memoryMB' | 'pids', integer: boolean): void => {
    const v = l[k];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      err(`limits.${k}`, `must be a positive ${integer ? 'integer' : 'number'}, got ${shown(v)}`);
      return;
    }
    out[k] = v;
  };
  positive('cpu', false);
  positive('memoryMB', false);
  positive('pids', true);
  return out;
}

/** The rules across servers: singletons, one server of a name per node, unique slots, a host on one node. */
function checkPlacement(servers: readonly Placed[], err: (path: string, what: string) => void): VosHost[] {
  const byName = new Map<string, Placed[]>();
  const slots = new Map<number, number>();
  for (const p of servers) {
    const s = p.server;
    const path = `servers[${p.index}]`;
    const same = byName.get(s.name) ?? [];
    if (SINGLETONS.includes(s.name) && same.length > 0) {
      err(`${path}.name`, `${s.name} appears more than once (first at servers[${same[0]!.index}]); a DC has one`);
    } else {
      // One server of a name per node ("each" meets every node).
      const clash = same.find((q) => q.server.node === s.node || q.server.node === 'each' || s.node === 'each');
      if (clash !== undefined) {
        const where = s.node === 'each' || clash.server.node === 'each' ? 'each node' : `node ${String(s.node)}`;
        err(`${path}.node`, `${s.name} is already placed on ${where} by servers[${clash.index}]`);
      }
    }
    same.push(p);
    byName.set(s.name, same);
    if (s.slot !== undefined) {
      const prev = slots.get(s.slot);
      if (prev !== undefined) err(`${path}.slot`, `slot ${s.slot} is already given to servers[${prev}]`);
      else slots.set(s.slot, p.index);
    }
  }
  const hosts = new Map<string, { node: number | 'each'; nodeFrom: number; servers: string[]; everyNode: string[] }>();
  for (const p of servers) {
    const s = p.server;
    if (s.shape !== 'unikernel' || s.host === undefined) continue;
    let h = hosts.get(s.host);
    if (h === undefined) hosts.set(s.host, (h = { node: 'each', nodeFrom: -1, servers: [], everyNode: [] }));
    if (s.node === 'each') {
      h.everyNode.push(s.name);
      continue;
    }
    if (h.node === 'each') {
      h.node = s.node;
      h.nodeFrom = p.index;
    } else if (h.node !== s.node) {
      err(`servers[${p.index}].host`, `host ${JSON.stringify(s.host)} is one OS process on node ${h.node} (servers[${h.nodeFrom}]), so it cannot hold a server on node ${s.node}; name another host`);
      continue;
    }
    h.servers.push(s.name);
  }
  return [...hosts].map(([name, h]) => ({ name, node: h.node, servers: h.servers, everyNode: h.everyNode }));
}

/**
 * Lays a spec out on the DC's nodes: the OS processes to start on each, unikernel hosts first.
 * EDVSINVAL (listing every one) when a server names a node that is not a member of the DC.
 */
export function placeVosSpec(spec: VosSpec, nodes: readonly number[]): VosProcessPlan[] {
  const members = [...new Set(nodes)].sort((a, b) => a - b);
  const errors: string[] = [];
  spec.servers.forEach((s, i) => {
    if (s.node !== 'each' && !members.includes(s.node)) errors.push(`servers[${i}].node: node ${s.node} is not a node of DC ${spec.dc} (nodes ${members.join(', ') || 'none'})`);
    for (const n of s.replicas?.nodes ?? []) if (!members.includes(n)) errors.push(`servers[${i}].replicas.nodes: node ${n} is not a node of DC ${spec.dc} (nodes ${members.join(', ') || 'none'})`);
  });
  if (errors.length > 0) throw invalid(`DC ${spec.dc}`, errors);
  const out: VosProcessPlan[] = [];
  for (const node of members) {
    for (const h of spec.hosts) {
      const here = spec.servers.filter((s) => s.shape === 'unikernel' && s.host === h.name && (s.node === node || s.node === 'each'));
      if (here.length > 0) out.push({ kind: 'unikernel', node, host: h.name, servers: here });
    }
    for (const s of spec.servers) if (s.shape === 'multiserver' && (s.node === node || s.node === 'each')) out.push({ kind: 'multiserver', node, server: s });
  }
  return out;
}
