/**
 * The VOS spec file: valid specs of the three shapes normalise as documented and lay out on the
 * DC's nodes; every rule's violation is reported with the path of its field, all of them at once;
 * invalid JSON is reported with the source and a line and column; and random mutations of a valid
 * spec never throw anything but a DvsError.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DvsError, isDvsError } from '../../src/ipc/errors.js';
import { parseJsonText } from '../../src/vos/spec-json.js';
import { DEFAULT_HOST, MAX_SPEC_SLOT, parseVosSpec, placeVosSpec, type VosSpec } from '../../src/vos/spec.js';

const MIXED = `{ "dc": 1, "servers": [
    { "name": "pm", "node": 0, "shape": "unikernel", "host": "core" },
    { "name": "ds", "node": 0, "shape": "unikernel", "host": "core" },
    { "name": "systask", "node": "each" },
    { "name": "fs", "node": 1, "shape": "multiserver" } ],
  "limits": { "cpu": 1.5, "memoryMB": 512, "pids": 256 } }`;

const UNIKERNEL = JSON.stringify({
  dc: 2,
  servers: [
    { name: 'systask', shape: 'unikernel' },
    { name: 'pm', node: 0, shape: 'unikernel' },
    { name: 'ds', node: 0, shape: 'unikernel' },
    { name: 'fs', node: 0, shape: 'unikernel', slot: 5 },
  ],
});

const MULTISERVER = JSON.stringify({
  dc: 3,
  servers: [{ name: 'systask' }, { name: 'pm', node: 0 }, { name: 'ds', node: 1, slot: 4 }, { name: 'rdisk', node: 1, options: { image: 'disk.img' } }, { name: 'custom:/opt/dvs/echo.mjs', node: 'each' }],
});

/** The error a spec gives (fails the test when it parses). */
function errorOf(text: string, source?: string): DvsError {
  try {
    parseVosSpec(text, source);
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return err as DvsError;
  }
  throw new Error(`spec parsed: ${text}`);
}

function errorsOf(text: string): string[] {
  const e = errorOf(text);
  expect(e.code).toBe('EDVSINVAL');
  const errs = e.details?.errors as string[];
  expect(Array.isArray(errs)).toBe(true);
  for (const line of errs) expect(e.message).toContain(line);
  return errs;
}

/** MIXED with its servers replaced and top-level fields changed. */
function spec(servers: unknown[], top: Record<string, unknown> = {}): string {
  return JSON.stringify({ dc: 1, servers, ...top });
}

describe('valid specs normalise', () => {
  it('mixed (the documented example): defaults filled, pm and ds share the "core" host on node 0', () => {
    const s = parseVosSpec(MIXED, 'mixed.json');
    expect(s).toEqual<VosSpec>({
      dc: 1,
      servers: [
        { name: 'pm', server: 'pm', node: 0, shape: 'unikernel', host: 'core' },
        { name: 'ds', server: 'ds', node: 0, shape: 'unikernel', host: 'core' },
        { name: 'systask', server: 'systask', node: 'each', shape: 'multiserver' },
        { name: 'fs', server: 'fs', node: 1, shape: 'multiserver' },
      ],
      hosts: [{ name: 'core', node: 0, servers: ['pm', 'ds'], everyNode: [] }],
      limits: { cpu: 1.5, memoryMB: 512, pids: 256 },
    });
    expect(placeVosSpec(s, [1, 0])).toEqual([
      { kind: 'unikernel', node: 0, host: 'core', servers: [s.servers[0], s.servers[1]] },
      { kind: 'multiserver', node: 0, server: s.servers[2] },
      { kind: 'multiserver', node: 1, server: s.servers[2] },
      { kind: 'multiserver', node: 1, server: s.servers[3] },
    ]);
  });

  it('all unikernel: one host "vos" per node, systask joining it on every node', () => {
    const s = parseVosSpec(UNIKERNEL);
    expect(s.servers.map((x) => [x.name, x.node, x.shape, x.host])).toEqual([
      ['systask', 'each', 'unikernel', DEFAULT_HOST],
      ['pm', 0, 'unikernel', DEFAULT_HOST],
      ['ds', 0, 'unikernel', DEFAULT_HOST],
      ['fs', 0, 'unikernel', DEFAULT_HOST],
    ]);
    expect(s.servers[3]?.slot).toBe(5);
    expect(s.limits).toBeUndefined();
    expect(s.hosts).toEqual([{ name: 'vos', node: 0, servers: ['pm', 'ds', 'fs'], everyNode: ['systask'] }]);
    const plan = placeVosSpec(s, [0, 1, 2]);
    expect(plan.map((p) => (p.kind === 'unikernel' ? [p.node, p.host, p.servers.map((x) => x.name)] : p))).toEqual([
      [0, 'vos', ['systask', 'pm', 'ds', 'fs']],
      [1, 'vos', ['systask']],
      [2, 'vos', ['systask']],
    ]);
  });

  it('all multiserver: every server its own process, custom servers carry their module path', () => {
    const s = parseVosSpec(MULTISERVER);
    expect(s.hosts).toEqual([]);
    expect(s.servers.every((x) => x.shape === 'multiserver' && x.host === undefined)).toBe(true);
    expect(s.servers[4]).toEqual({ name: 'custom:/opt/dvs/echo.mjs', server: 'custom', module: '/opt/dvs/echo.mjs', node: 'each', shape: 'multiserver' });
    expect(s.servers[2]).toEqual({ name: 'ds', server: 'ds', node: 1, shape: 'multiserver', slot: 4 });
    const plan = placeVosSpec(s, [0, 1]);
    expect(plan.every((p) => p.kind === 'multiserver')).toBe(true);
    expect(plan.map((p) => (p.kind === 'multiserver' ? `${p.node}:${p.server.name}` : ''))).toEqual(['0:systask', '0:pm', '0:custom:/opt/dvs/echo.mjs', '1:systask', '1:ds', '1:rdisk', '1:custom:/opt/dvs/echo.mjs']);
  });

  it('placing on nodes that are not the DC\'s: every such server named', () => {
    const s = parseVosSpec(MIXED);
    const e = (() => {
      try {
        placeVosSpec(s, [0]);
      } catch (err) {
        return err as DvsError;
      }
      return undefined;
    })();
    expect(e?.code).toBe('EDVSINVAL');
    expect(e?.details?.errors).toEqual(['servers[3].node: node 1 is not a node of DC 1 (nodes 0)']);
  });

  it('a leading byte-order mark and any whitespace are fine', () => {
    expect(parseVosSpec(`\ufeff\n\t ${MIXED}\r\n`).dc).toBe(1);
  });
});

describe('each rule names its field', () => {
  const pm = { name: 'pm', node: 0 };
  const cases: [string, string, string][] = [
    ['document not an object', '[]', '(document): must be an object'],
    ['dc missing', JSON.stringify({ servers: [pm] }), 'dc: required'],
    ['dc out of range', spec([pm], { dc: 70000 }), 'dc: must be an integer in 0..65535, got 70000'],
    ['dc a string', spec([pm], { dc: '1' }), 'dc: must be an integer in 0..65535, got "1"'],
    ['dc fractional', spec([pm], { dc: 1.5 }), 'dc: must be an integer'],
    ['servers missing', JSON.stringify({ dc: 1 }), 'servers: required'],
    ['servers not an array', spec([], { servers: { pm: 0 } }), 'servers: must be a non-empty array, got an object'],
    ['servers empty', spec([]), 'servers: must not be empty'],
    ['server not an object', spec([pm, 'ds']), 'servers[1]: must be an object'],
    ['unknown server name', spec([{ name: 'pn', node: 0 }]), 'servers[0].name: must be one of systask, pm, ds, fs, rdisk, nweb or "custom:<module path>", got "pn"'],
    ['name missing', spec([{ node: 0 }]), 'servers[0].name: required'],
    ['name not a string', spec([{ name: 7, node: 0 }]), 'servers[0].name: must be a string'],
    ['custom without a path', spec([{ name: 'custom:', node: 0 }]), 'servers[0].name: "custom:" must be followed by a module path'],
    ['node missing', spec([pm, { name: 'fs' }]), 'servers[1].node: required'],
    ['node negative', spec([{ name: 'fs', node: -1 }]), 'servers[0].node: must be a non-negative integer or "each", got -1'],
    ['node fractional', spec([{ name: 'fs', node: 0.5 }]), 'servers[0].node: must be a non-negative integer'],
    ['node a word', spec([{ name: 'fs', node: 'all' }]), 'servers[0].node: must be a non-negative integer or "each", got "all"'],
    ['systask on one node', spec([{ name: 'systask', node: 0 }]), 'servers[0].node: systask runs on each node: must be "each" or absent, got 0'],
    ['pm on each node', spec([{ name: 'pm', node: 'each' }]), 'servers[0].node: pm runs once per DC'],
    ['shape misspelt', spec([pm, { name: 'ds', node: 0 }, { name: 'fs', node: 1, shape: 'uni' }]), 'servers[2].shape: must be "unikernel" or "multiserver", got "uni"'],
    ['host on a multiserver server', spec([{ name: 'fs', node: 1, host: 'core' }]), 'servers[0].host: only a unikernel server runs in a host'],
    ['host name with a space', spec([{ name: 'fs', node: 1, shape: 'unikernel', host: 'my host' }]), 'servers[0].host: must be a host name'],
    ['host not a string', spec([{ name: 'fs', node: 1, shape: 'unikernel', host: 3 }]), 'servers[0].host: must be a host name'],
    ['one host on two nodes', spec([{ ...pm, shape: 'unikernel', host: 'core' }, { name: 'fs', node: 1, shape: 'unikernel', host: 'core' }]), 'servers[1].host: host "core" is one OS process on node 0 (servers[0])'],
    ['the default host on two nodes', spec([{ ...pm, shape: 'unikernel' }, { name: 'fs', node: 2, shape: 'unikernel' }]), 'servers[1].host: host "vos" is one OS process on node 0'],
    ['replicas not an object', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: [1] }]), 'servers[0].replicas: must be an object'],
    ['replicas of pm', spec([{ ...pm, shape: 'unikernel', replicas: { nodes: [0, 1] } }]), 'servers[0].replicas: pm cannot run as a replica group'],
    ['replicas multiserver', spec([{ name: 'rdisk', node: 1, replicas: { nodes: [1, 2] } }]), 'servers[0].replicas: a replica group runs in its node daemons'],
    ['replicas without the node', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [2, 3] } }]), "servers[0].replicas.nodes: must include the server's node 1"],
    ['replicas twice a node', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 1] } }]), 'servers[0].replicas.nodes: names a node twice'],
    ['replicas mode misspelt', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 2], mode: 'pasive' } }]), 'servers[0].replicas.mode: must be "passive" or "active"'],
    ['replicas quorum too big', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 2], mode: 'active', quorum: 3 } }]), 'servers[0].replicas.quorum: must be an integer in 1..2'],
    ['replicas quorum of a passive group', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 2], quorum: 1 } }]), 'servers[0].replicas.quorum: only an active group has a quorum'],
    ['replicas lease too short', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 2], leaseMs: 10 } }]), 'servers[0].replicas.leaseMs: must be an integer in 1000..60000'],
    ['replicas unknown field', spec([{ name: 'rdisk', node: 1, shape: 'unikernel', replicas: { nodes: [1, 2], size: 3 } }]), 'servers[0].replicas.size: unknown field'],
    ['pm twice', spec([pm, { name: 'pm', node: 1 }]), 'servers[1].name: pm appears more than once (first at servers[0])'],
    ['ds twice', spec([{ name: 'ds', node: 0 }, pm, { name: 'ds', node: 0, shape: 'unikernel' }]), 'servers[2].name: ds appears more than once (first at servers[0])'],
    ['systask twice', spec([{ name: 'systask' }, { name: 'systask', node: 'each' }]), 'servers[1].name: systask appears more than once'],
    ['fs twice on one node', spec([{ name: 'fs', node: 1 }, { name: 'fs', node: 1, shape: 'unikernel' }]), 'servers[1].node: fs is already placed on node 1 by servers[0]'],
    ['fs on each node and on one', spec([{ name: 'fs', node: 'each' }, { name: 'fs', node: 1 }]), 'servers[1].node: fs is already placed on each node by servers[0]'],
    ['a slot twice', spec([{ ...pm, slot: 4 }, { name: 'ds', node: 1, slot: 4 }]), 'servers[1].slot: slot 4 is already given to servers[0]'],
    ['a slot out of range', spec([{ ...pm, slot: MAX_SPEC_SLOT + 1 }]), `servers[0].slot: must be a system slot, an integer in 0..${MAX_SPEC_SLOT}, got ${MAX_SPEC_SLOT + 1}`],
    ['a negative slot', spec([{ ...pm, slot: -2 }]), 'servers[0].slot: must be a system slot'],
    ['a slot for systask', spec([{ name: 'systask', slot: 2 }]), 'servers[0].slot: systask has a fixed task slot on each node'],
    ['a slot for a server on each node', spec([{ name: 'nweb', node: 'each', slot: 2 }]), 'servers[0].slot: a server on each node cannot share one slot'],
    ['limits not an object', spec([pm], { limits: 5 }), 'limits: must be an object'],
    ['cpu zero', spec([pm], { limits: { cpu: 0 } }), 'limits.cpu: must be a positive number, got 0'],
    ['memoryMB a string', spec([pm], { limits: { memoryMB: '512' } }), 'limits.memoryMB: must be a positive number, got "512"'],
    ['pids fractional', spec([pm], { limits: { pids: 1.5 } }), 'limits.pids: must be a positive integer, got 1.5'],
    ['unknown limit', spec([pm], { limits: { gpu: 1 } }), 'limits.gpu: unknown field (fields: cpu, memoryMB, pids)'],
    ['unknown top-level field (a typo)', spec([pm], { limit: { cpu: 1 } }), 'limit: unknown field (fields: dc, servers, limits)'],
    ['unknown server field (a typo)', spec([{ ...pm, shap: 'unikernel' }]), 'servers[0].shap: unknown field (fields: name, node, shape, host, slot, options, replicas)'],
    ['rdisk without its image', spec([pm, { name: 'rdisk', node: 1 }]), 'servers[1].options.image: required: the image file'],
    ['an unknown option (a typo)', spec([pm, { name: 'nweb', node: 0, options: { prot: 80 } }]), 'servers[1].options.prot: unknown option of nweb (options: port, address, root)'],
    ['an option of the wrong type', spec([pm, { name: 'nweb', node: 0, options: { port: 70000 } }]), 'servers[1].options.port: must be an integer in 0..65535'],
    ['options on a server that takes none', spec([{ ...pm, options: { x: 1 } }]), 'servers[0].options: pm takes no options'],
    ['options not an object', spec([pm, { name: 'fs', node: 0, options: [1] }]), 'servers[1].options: must be an object'],
  ];

  it.each(cases)('%s', (_label, text, expected) => {
    const errs = errorsOf(text);
    expect(errs.some((e) => e.startsWith(expected))).toBe(true);
  });

  it('collects every error, not just the first', () => {
    const text = spec([{ name: 'pn', node: 0 }, { name: 'fs', node: 1, shape: 'uni' }, { name: 'ds', node: -1 }], { dc: -1, extra: true });
    const e = errorOf(text, 'bad.json');
    const errs = e.details?.errors as string[];
    expect(errs.map((x) => x.split(':')[0])).toEqual(['extra', 'dc', 'servers[0].name', 'servers[1].shape', 'servers[2].node']);
    expect(e.message).toMatch(/^EDVSINVAL: bad\.json: invalid VOS spec \(5 errors\):\n {2}extra: /);
    expect(e.details?.source).toBe('bad.json');
  });
});

describe('invalid JSON', () => {
  it('reports the source, line and column', () => {
    const e = errorOf('{\n  "dc": 1,\n  "servers": [}\n', 'vos.json');
    expect(e.code).toBe('EDVSINVAL');
    expect(e.message).toBe("EDVSINVAL: vos.json:3:15: invalid JSON: expected a value, got \"}\"");
    expect(e.details).toMatchObject({ source: 'vos.json', line: 3, column: 15, offset: 27 });
  });

  it.each([
    ['empty text', '', '1:1', 'expected a value, got end of input'],
    ['a trailing comma', '{"dc": 1,}', '1:10', 'expected a key in double quotes'],
    ['a duplicate key', '{"dc": 1,\n "dc": 2, "servers": []}', '2:2', 'duplicate key "dc"'],
    ['a comment', '{"dc": 1 // one\n}', '1:10', "expected ',' or '}'"],
    ['single quotes', "{'dc': 1}", '1:2', 'expected a key in double quotes'],
    ['an unterminated string', '{"dc', '1:2', 'unterminated string'],
    ['a leading zero', '{"dc": 01}', '1:9', 'bad number'],
    ['trailing garbage', '{"dc": 1} x', '1:11', 'unexpected "x" after the end'],
    ['deep nesting', '['.repeat(100), '1:65', 'nested deeper than 64 levels'],
  ])('%s', (_label, text, at, what) => {
    const e = errorOf(text, 'f.json');
    expect(e.code).toBe('EDVSINVAL');
    expect(e.message).toContain(`f.json:${at}: invalid JSON: ${what}`);
  });

  it('the JSON reader agrees with JSON.parse on every JSON text', () => {
    fc.assert(
      fc.property(fc.json({ depthSize: 'small' }), (text) => {
        expect(parseJsonText(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 300, seed: 15 },
    );
    // Strings with escapes and unicode, numbers with exponents.
    const tricky = '{"a\\u00e9\\n\\"": [1e3, -0.5, 2E-2, "\\ud83d\\ude00 ok", true, false, null, {}], "__proto__": 1}';
    expect(parseJsonText(tricky)).toEqual(JSON.parse(tricky));
  });
});

describe('mutations never throw anything but DvsError', () => {
  /** A valid spec's text with random edits: characters deleted, inserted or replaced. */
  const textMutation = fc.tuple(
    fc.constantFrom(MIXED, UNIKERNEL, MULTISERVER),
    fc.array(fc.tuple(fc.nat(), fc.nat(4), fc.constantFrom('', '{', '}', '[', ']', ',', ':', '"', '0', '-1', 'each', 'x', ' ', '\\', '\n', 'null', 'é')), { maxLength: 6 }),
  ).map(([base, edits]) => {
    let t = base;
    for (const [at, len, ins] of edits) {
      const i = at % (t.length + 1);
      t = t.slice(0, i) + ins + t.slice(i + len);
    }
    return t;
  });

  /** A valid spec with random JSON put at random places (fields replaced, added or removed). */
  const valueMutation = fc.tuple(
    fc.constantFrom(MIXED, UNIKERNEL, MULTISERVER),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom('dc', 'servers', 'limits', 'name', 'node', 'shape', 'host', 'slot', 'cpu', 'pids', 'memoryMB', 'zzz'), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined })), { maxLength: 4 }),
  ).map(([base, edits]) => {
    const doc = JSON.parse(base) as Record<string, unknown>;
    const objects = (): Record<string, unknown>[] => {
      const out: Record<string, unknown>[] = [doc];
      if (Array.isArray(doc.servers)) for (const s of doc.servers) if (typeof s === 'object' && s !== null && !Array.isArray(s)) out.push(s as Record<string, unknown>);
      if (typeof doc.limits === 'object' && doc.limits !== null && !Array.isArray(doc.limits)) out.push(doc.limits as Record<string, unknown>);
      return out;
    };
    for (const [at, key, value] of edits) {
      const targets = objects();
      const o = targets[at % targets.length]!;
      if (value === undefined) delete o[key];
      else o[key] = value;
    }
    return JSON.stringify(doc);
  });

  it.each([
    ['text edits', textMutation],
    ['value edits', valueMutation],
  ])('%s', (_label, arb) => {
    const seen = { parsed: 0, refused: 0 };
    fc.assert(
      fc.property(arb, (text) => {
        let s: VosSpec;
        try {
          s = parseVosSpec(text, 'm.json');
          seen.parsed++;
        } catch (err) {
          seen.refused++;
          expect(isDvsError(err, 'EDVSINVAL')).toBe(true);
          const errs = (err as DvsError).details?.errors as unknown;
          expect(Array.isArray(errs) && errs.length > 0 && errs.every((x) => typeof x === 'string')).toBe(true);
          return;
        }
        // What parses keeps the invariants the rules promise.
        expect(s.servers.length).toBeGreaterThan(0);
        for (const x of s.servers) {
          expect(['unikernel', 'multiserver']).toContain(x.shape);
          expect(x.host !== undefined).toBe(x.shape === 'unikernel');
        }
        expect(s.servers.filter((x) => x.name === 'pm').length).toBeLessThanOrEqual(1);
        const slots = s.servers.flatMap((x) => (x.slot === undefined ? [] : [x.slot]));
        expect(new Set(slots).size).toBe(slots.length);
        try {
          placeVosSpec(s, [0, 1]);
        } catch (err) {
          expect(isDvsError(err, 'EDVSINVAL')).toBe(true);
        }
      }),
      { numRuns: 500, seed: 15 },
    );
    // Both sides were exercised: some mutations still parse, others are refused.
    expect(seen.parsed).toBeGreaterThan(10);
    expect(seen.refused).toBeGreaterThan(10);
  });

  it('input that is not a string is refused the same way', () => {
    expect(() => parseVosSpec(undefined as unknown as string)).toThrow(expect.objectContaining({ code: 'EDVSINVAL' }));
    expect(() => parseVosSpec('x'.repeat(1024 * 1024 + 1))).toThrow(expect.objectContaining({ code: 'EDVSINVAL' }));
  });
});
