/**
 * Endpoint arithmetic (reference §1.3) and DC/kernel limits validation: slots and generations
 * round-trip, task slots are negative, SYSTASK(n) = SYSTEM - n, and the magic values ANY, NONE and
 * SELF are never the endpoint of any slot at any generation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ANY, EndpointSpace, HARDWARE, KERNEL, NONE, SELF, SYSTEM } from '../../src/ipc/endpoint.js';
import { DvsError } from '../../src/ipc/errors.js';
import { DEFAULT_DC_LIMITS, DEFAULT_KERNEL_LIMITS, MAX_SLOTS, NR_FIXED_TASKS, resolveDcLimits, resolveKernelLimits, type DcLimits } from '../../src/ipc/limits.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DvsError);
    return (err as DvsError).code;
  }
  return undefined;
}

const space = new EndpointSpace(resolveDcLimits());

describe('magic values', () => {
  it('match the reference numbers', () => {
    expect(ANY).toBe(0x7ace);
    expect(ANY).toBe(31438);
    expect(NONE).toBe(0x6ace);
    expect(NONE).toBe(27342);
    expect(SELF).toBe(0x8ace);
    expect(KERNEL).toBe(-1);
    expect(HARDWARE).toBe(KERNEL);
    expect(SYSTEM).toBe(-2);
  });
});

describe('EndpointSpace with the default limits', () => {
  it('uses G = nrTasks + SELF + 1 and the reference slot range', () => {
    expect(space.limits).toEqual({ nrNodes: 32, nrTasks: 36, nrProcs: 220, nrSysProcs: 64 });
    expect(space.genSize).toBe(36 + 0x8ace + 1);
    expect(space.minSlot).toBe(-36);
    expect(space.maxSlot).toBe(219);
  });

  it('equals the slot number at generation 0', () => {
    for (let slot = space.minSlot; slot <= space.maxSlot; slot++) {
      expect(space.make(0, slot)).toBe(slot);
      expect(space.slotOf(slot)).toBe(slot);
      expect(space.generationOf(slot)).toBe(0);
    }
  });

  it('packs generation * G + slot and unpacks it again, task slots included', () => {
    const G = space.genSize;
    expect(space.make(1, 5)).toBe(G + 5);
    expect(space.make(1, -3)).toBe(G - 3);
    expect(space.make(7, -36)).toBe(7 * G - 36);
    for (const gen of [0, 1, 2, 3, 17, 1000, 123456]) {
      for (const slot of [space.minSlot, -35, -3, -2, -1, 0, 1, 27, 28, 100, space.maxSlot]) {
        const ep = space.make(gen, slot);
        expect(space.slotOf(ep)).toBe(slot);
        expect(space.generationOf(ep)).toBe(gen);
        expect(space.checkEndpoint(ep)).toBe(slot);
      }
    }
  });

  it('gives every (generation, slot) pair a distinct endpoint', () => {
    const seen = new Set<number>();
    for (let gen = 0; gen < 4; gen++) {
      for (let slot = space.minSlot; slot <= space.maxSlot; slot++) seen.add(space.make(gen, slot));
    }
    expect(seen.size).toBe(4 * (space.maxSlot - space.minSlot + 1));
  });

  it('places the fixed tasks below SYSTEM: SYSTASK(n), SLOTS, CLOCK, IDLE = PROXY', () => {
    expect(space.systask(0)).toBe(-2);
    expect(space.systask(1)).toBe(-3);
    expect(space.systask(31)).toBe(-33);
    expect(space.SLOTS).toBe(SYSTEM - 32);
    expect(space.SLOTS).toBe(-34);
    expect(space.CLOCK).toBe(-35);
    expect(space.IDLE).toBe(-36);
    expect(space.PROXY).toBe(space.IDLE);
    // Every fixed task is a valid task slot.
    expect(space.IDLE).toBeGreaterThanOrEqual(space.minSlot);
    for (const t of [KERNEL, space.systask(0), space.systask(31), space.SLOTS, space.CLOCK, space.IDLE]) {
      expect(space.isTaskSlot(t)).toBe(true);
      expect(space.isSystemSlot(t)).toBe(true);
    }
  });

  it('rejects SYSTASK of a node outside the DVS', () => {
    expect(codeOf(() => space.systask(32))).toBe('EDVSBADNODEID');
    expect(codeOf(() => space.systask(-1))).toBe('EDVSBADNODEID');
    expect(codeOf(() => space.systask(1.5))).toBe('EDVSBADNODEID');
  });

  it('classifies slots: tasks and slots below nrSysProcs - nrTasks are system, the rest user', () => {
    expect(space.isSystemSlot(-36)).toBe(true);
    expect(space.isSystemSlot(0)).toBe(true);
    expect(space.isSystemSlot(27)).toBe(true);
    expect(space.isSystemSlot(28)).toBe(false);
    expect(space.isSystemSlot(219)).toBe(false);
    expect(space.isTaskSlot(-1)).toBe(true);
    expect(space.isTaskSlot(0)).toBe(false);
    expect(space.privId(-36)).toBe(0);
    expect(space.privId(0)).toBe(36);
    expect(space.privId(27)).toBe(63);
  });

  it('rejects a bad generation or slot in make', () => {
    expect(codeOf(() => space.make(-1, 0))).toBe('EDVSBADVALUE');
    expect(codeOf(() => space.make(0.5, 0))).toBe('EDVSBADVALUE');
    expect(codeOf(() => space.make(0, 220))).toBe('EDVSRANGE');
    expect(codeOf(() => space.make(0, -37))).toBe('EDVSRANGE');
    expect(codeOf(() => space.make(0, 1.5))).toBe('EDVSRANGE');
  });

  it('checkEndpoint: EDVSENDPOINT for magic or non-integer values, EDVSRANGE outside the DC', () => {
    for (const ep of [ANY, NONE, SELF, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(codeOf(() => space.checkEndpoint(ep)), String(ep)).toBe('EDVSENDPOINT');
    }
    expect(codeOf(() => space.checkEndpoint(-37))).toBe('EDVSRANGE');
    expect(codeOf(() => space.checkEndpoint(220))).toBe('EDVSRANGE');
    // A slot above nrProcs at a later generation is out of range too.
    expect(codeOf(() => space.checkEndpoint(space.genSize + 220))).toBe('EDVSRANGE');
    expect(space.checkEndpoint(-36)).toBe(-36);
    expect(space.checkEndpoint(219)).toBe(219);
  });

  it('formats endpoints as slot, slot@generation or the magic name', () => {
    expect(space.format(ANY)).toBe('ANY');
    expect(space.format(NONE)).toBe('NONE');
    expect(space.format(SELF)).toBe('SELF');
    expect(space.format(5)).toBe('5');
    expect(space.format(-2)).toBe('-2');
    expect(space.format(space.make(3, 5))).toBe('5@3');
    expect(space.format(space.make(1, -3))).toBe('-3@1');
    expect(space.isReserved(ANY) && space.isReserved(NONE) && space.isReserved(SELF)).toBe(true);
    expect(space.isReserved(0)).toBe(false);
  });
});

describe('ANY, NONE and SELF never collide with a process endpoint', () => {
  it('exhaustively for the default limits, generations 0..2000', () => {
    const magic = new Set([ANY, NONE, SELF]);
    for (let gen = 0; gen <= 2000; gen++) {
      for (let slot = space.minSlot; slot <= space.maxSlot; slot++) {
        const ep = gen * space.genSize + slot;
        if (magic.has(ep)) throw new Error(`slot ${slot} gen ${gen} collides with a magic value`);
      }
    }
    // And a magic value never decodes to a valid endpoint.
    for (const m of magic) expect(codeOf(() => space.checkEndpoint(m))).toBe('EDVSENDPOINT');
  });

  it('for any valid limits and any generation (property)', () => {
    const limitsArb = fc
      .record({ nrNodes: fc.integer({ min: 1, max: 2048 }), extraTasks: fc.integer({ min: 0, max: 1000 }), procsFrac: fc.double({ min: 0, max: 1, noNaN: true }) })
      .map(({ nrNodes, extraTasks, procsFrac }) => {
        const nrTasks = nrNodes + NR_FIXED_TASKS + extraTasks;
        const nrProcs = 1 + Math.floor(procsFrac * (MAX_SLOTS - nrTasks - 1));
        return resolveDcLimits({ nrNodes, nrTasks, nrProcs, nrSysProcs: nrTasks + Math.min(28, nrProcs) });
      });
    fc.assert(
      fc.property(limitsArb, fc.nat({ max: 1_000_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (limits: DcLimits, gen, frac) => {
        const s = new EndpointSpace(limits);
        const slot = s.minSlot + Math.floor(frac * (s.maxSlot - s.minSlot));
        const ep = s.make(gen, slot);
        return ep !== ANY && ep !== NONE && ep !== SELF && s.slotOf(ep) === slot && s.generationOf(ep) === gen && s.checkEndpoint(ep) === slot;
      }),
      { numRuns: 2000 },
    );
  });

  it('at the edges: the highest generation-0 slot and the lowest generation-1 endpoint', () => {
    const widest = new EndpointSpace(resolveDcLimits({ nrNodes: 1, nrTasks: 5, nrProcs: MAX_SLOTS - 5 }));
    expect(widest.make(0, widest.maxSlot)).toBe(MAX_SLOTS - 6);
    expect(widest.make(0, widest.maxSlot)).toBeLessThan(NONE);
    expect(() => resolveDcLimits({ nrNodes: 1, nrTasks: 5, nrProcs: MAX_SLOTS - 4 })).toThrow(/must not exceed/);
    expect(widest.make(1, widest.minSlot)).toBe(SELF + 1);
    expect(space.make(1, space.minSlot)).toBe(SELF + 1);
  });
});

describe('DC limits', () => {
  it('defaults to the reference dimensions', () => {
    expect(resolveDcLimits()).toEqual(DEFAULT_DC_LIMITS);
    expect(DEFAULT_DC_LIMITS).toEqual({ nrNodes: 32, nrTasks: 36, nrProcs: 220, nrSysProcs: 64 });
    expect(Object.isFrozen(resolveDcLimits())).toBe(true);
  });

  it('derives nrTasks from nrNodes and fills the rest', () => {
    expect(resolveDcLimits({ nrNodes: 4 })).toEqual({ nrNodes: 4, nrTasks: 8, nrProcs: 220, nrSysProcs: 36 });
    expect(resolveDcLimits({ nrNodes: 100 })).toEqual({ nrNodes: 100, nrTasks: 104, nrProcs: 220, nrSysProcs: 132 });
    expect(resolveDcLimits({ nrNodes: 2, nrProcs: 10 })).toEqual({ nrNodes: 2, nrTasks: 6, nrProcs: 10, nrSysProcs: 16 });
    expect(resolveDcLimits({ nrNodes: 2, nrTasks: 10, nrProcs: 20, nrSysProcs: 12 })).toEqual({ nrNodes: 2, nrTasks: 10, nrProcs: 20, nrSysProcs: 12 });
  });

  it.each([
    ['nrNodes 0', { nrNodes: 0 }],
    ['nrNodes fractional', { nrNodes: 1.5 }],
    ['nrNodes too large', { nrNodes: 4097 }],
    ['nrProcs 0', { nrProcs: 0 }],
    ['nrProcs reaching NONE', { nrProcs: NONE + 1 }],
    ['nrTasks below nrNodes + fixed tasks', { nrNodes: 8, nrTasks: 11 }],
    ['nrTasks too large', { nrNodes: 1, nrTasks: 8193 }],
    ['nrSysProcs below nrTasks', { nrNodes: 2, nrTasks: 6, nrSysProcs: 5 }],
    ['nrSysProcs above every slot', { nrNodes: 2, nrTasks: 6, nrProcs: 10, nrSysProcs: 17 }],
    ['a string', { nrProcs: '10' as unknown as number }],
  ])('rejects %s with EDVSBADVALUE', (_name, partial) => {
    expect(codeOf(() => resolveDcLimits(partial))).toBe('EDVSBADVALUE');
  });
});

describe('kernel limits', () => {
  it('defaults to 64 KiB payloads and 64 KiB copy chunks', () => {
    expect(resolveKernelLimits()).toEqual(DEFAULT_KERNEL_LIMITS);
    expect(DEFAULT_KERNEL_LIMITS).toEqual({ maxPayloadBytes: 65536, maxCopyChunk: 1048576 });
    expect(resolveKernelLimits({ maxCopyChunk: 1000 })).toEqual({ maxPayloadBytes: 65536, maxCopyChunk: 1000 });
  });

  it.each([
    ['zero payload limit', { maxPayloadBytes: 0 }],
    ['negative chunk', { maxCopyChunk: -1 }],
    ['fractional chunk', { maxCopyChunk: 10.5 }],
    ['huge payload limit', { maxPayloadBytes: 64 * 1024 * 1024 + 1 }],
  ])('rejects a %s with EDVSBADVALUE', (_name, partial) => {
    expect(codeOf(() => resolveKernelLimits(partial))).toBe('EDVSBADVALUE');
  });
});
