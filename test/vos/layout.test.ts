/** The VOS layout and record: slots fixed at boot, units per node, records read back strictly. */
import { describe, expect, it } from 'vitest';
import { EndpointSpace } from '../../src/ipc/endpoint.js';
import { isDvsError } from '../../src/ipc/errors.js';
import { resolveDcLimits } from '../../src/ipc/limits.js';
import { assignSlots, vosUnits } from '../../src/vos/layout.js';
import { parseVosSpec } from '../../src/vos/spec.js';
import { makeVosRecord, readVosRecord, unitsOf } from '../../src/vos/vos-record.js';

const limits = resolveDcLimits();
const spec = (servers: unknown[], dc = 1): string => JSON.stringify({ dc, servers });

describe('VOS layout', () => {
  it('gives well-known slots, the spec\'s, and chosen ones from 8; SYSTASK its node\'s task slot; "each" servers one slot per node', () => {
    const s = parseVosSpec(spec([{ name: 'systask' }, { name: 'pm', node: 0 }, { name: 'ds', node: 1, slot: 0 }, { name: 'custom:/x/a.mjs', node: 'each' }, { name: 'fs', node: 2 }]));
    const slots = assignSlots(s, limits, [0, 1, 2]);
    // DS took slot 0, so PM gets the lowest chosen slot; FS its well-known 1.
    expect(slots).toEqual({ ds: 0, fs: 1, pm: 8, 'custom:/x/a.mjs@0': 9, 'custom:/x/a.mjs@1': 10, 'custom:/x/a.mjs@2': 11 });
    const units = vosUnits(s, slots, limits, [0, 1, 2]);
    const space = new EndpointSpace(limits);
    expect(units.filter((u) => u.server === 'systask').map((u) => [u.key, u.slot, u.failover])).toEqual([0, 1, 2].map((n) => [`systask@${n}`, space.systask(n), false]));
    expect(units.find((u) => u.key === 'pm')).toMatchObject({ node: 0, slot: 8, failover: true, shape: 'multiserver' });
    // A node that joined after boot has no slot for an "each" custom server: it is left out there.
    expect(vosUnits(s, slots, limits, [0, 1, 2, 3]).filter((u) => u.node === 3).map((u) => u.key)).toEqual(['systask@3']);
  });

  it('a replicated server: one unit per member node on the group\'s slot, each member with a system slot of its own', () => {
    const s = parseVosSpec(spec([{ name: 'fs', node: 0 }, { name: 'rdisk', node: 1, shape: 'unikernel', options: { image: 'd.img' }, replicas: { nodes: [1, 2], mode: 'active', quorum: 1 } }]));
    const slots = assignSlots(s, limits, [0, 1, 2]);
    expect(slots).toEqual({ fs: 1, rdisk: 3, 'rdisk~1': 8, 'rdisk~2': 9 });
    const units = vosUnits(s, slots, limits, [0, 1, 2]).filter((u) => u.server === 'rdisk');
    expect(units.map((u) => [u.key, u.node, u.slot, u.memberSlot, u.failover])).toEqual([
      ['rdisk#1', 1, 3, 8, false],
      ['rdisk#2', 2, 3, 9, false],
    ]);
    expect(units[0]?.replicas).toEqual({ nodes: [1, 2], mode: 'active', quorum: 1 });
    // A member node that is not the DC's is refused, naming the field.
    expect(() => assignSlots(parseVosSpec(spec([{ name: 'rdisk', node: 1, shape: 'unikernel', options: { image: 'd.img' }, replicas: { nodes: [1, 5] } }])), limits, [0, 1, 2])).toThrow(/servers\[0\]\.replicas\.nodes: node 5 is not a node of DC 1/);
  });

  it('refuses a slot outside the DC\'s server slots and a DC with too few of them, naming the field', () => {
    const small = resolveDcLimits({ nrNodes: 4, nrSysProcs: 4 + 4 + 9 });
    const s = parseVosSpec(spec([{ name: 'pm', node: 0, slot: 20 }]));
    expect(() => assignSlots(s, small, [0])).toThrow(/servers\[0\]\.slot: DC 1 has server slots 0\.\.8, got 20/);
    const many = parseVosSpec(spec([{ name: 'custom:/a.mjs', node: 'each' }]));
    expect(() => assignSlots(many, small, [0, 1])).toThrow(/no free server slot left for custom:\/a\.mjs@1/);
    try {
      assignSlots(parseVosSpec(spec([{ name: 'ds', node: 5 }])), limits, [0, 1]);
      expect.unreachable();
    } catch (e) {
      expect(isDvsError(e, 'EDVSINVAL')).toBe(true);
      expect((e as { details: { errors: string[] } }).details.errors[0]).toMatch(/^servers\[0\]\.node/);
    }
  });

  it('a record reads back to the same units; a malformed or foreign one is refused', () => {
    const text = spec([{ name: 'systask', shape: 'unikernel' }, { name: 'pm', node: 1, shape: 'unikernel' }, { name: 'ds', node: 1 }]);
    const dc = { dcid: 1, limits, nodes: [0, 1] };
    const boot = makeVosRecord(text, 'vos.json', dc, 1234);
    const back = readVosRecord(1, JSON.parse(JSON.stringify(boot.record)));
    expect(unitsOf(back, dc)).toEqual(unitsOf(boot, dc));
    expect(() => makeVosRecord(text, 'vos.json', { ...dc, dcid: 2 })).toThrow(/the spec is for DC 1, not DC 2/);
    for (const bad of [null, 7, { ...boot.record, version: 2 }, { ...boot.record, dc: 2 }, { ...boot.record, slots: { pm: -1 } }, { ...boot.record, spec: '{"dc":1}' }, { ...boot.record, slots: [] }]) {
      expect(() => readVosRecord(1, bad as never)).toThrow(expect.objectContaining({ code: 'EDVSBADVALUE' }));
    }
  });
});
