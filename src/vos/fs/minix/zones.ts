/**
 * A file's block map: file block index → zone, through the inode's 7 direct zones and its single,
 * double and triple indirect blocks (each an array of u32 zone numbers, 0 = hole). Zones are
 * allocated on write (indirect blocks zeroed) and freed on truncate, indirect blocks with them
 * once nothing below is left. Every zone number read from disk is range-checked: a corrupt pointer
 * is an EDVSIO naming the file, never a device access outside the data area.
 */
import { DvsError } from '../../../ipc/errors.js';
import type { BlockCache } from '../block-cache.js';
import type { Bitmap } from './bitmap.js';
import { DIRECT_ZONES, type Superblock } from './superblock.js';
import type { Inode } from './inode.js';

/** Where a file block's zone number is held: an inode slot, then one index per indirect level. */
interface BlockPath {
  readonly slot: number;
  readonly steps: readonly number[];
}

export class Zones {
  private readonly ptrs: number;

  constructor(
    private readonly cache: BlockCache,
    private readonly sb: Superblock,
    private readonly zmap: Bitmap,
  ) {
    this.ptrs = sb.pointersPerBlock;
  }

  /** Throws EDVSIO unless `zone` is 0 or inside the data area. */
  checkZone(zone: number, what: string): void {
    if (zone !== 0 && (zone < this.sb.firstDataZone || zone >= this.sb.zones)) {
      throw new DvsError('EDVSIO', `${what}: zone pointer ${zone} outside the data zones [${this.sb.firstDataZone}, ${this.sb.zones})`, {
        details: { path: what, zone },
      });
    }
  }

  private pathOf(index: number, what: string): BlockPath {
    const p = this.ptrs;
    if (index < DIRECT_ZONES) return { slot: index, steps: [] };
    let i = index - DIRECT_ZONES;
    if (i < p) return { slot: 7, steps: [i] };
    i -= p;
    if (i < p * p) return { slot: 8, steps: [Math.floor(i / p), i % p] };
    i -= p * p;
    if (i < p * p * p) return { slot: 9, steps: [Math.floor(i / (p * p)), Math.floor(i / p) % p, i % p] };
    throw new DvsError('EDVSFBIG', `${what}: block ${index} is beyond triple-indirect reach`, { details: { path: what } });
  }

  private async pointerAt(zone: number, index: number): Promise<number> {
    const data = await this.cache.read(zone);
    return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(index * 4, true);
  }

  /** The zone holding file block `index`, 0 for a hole. */
  async zoneOf(inode: Inode, index: number, what: string): Promise<number> {
    const { slot, steps } = this.pathOf(index, what);
    let zone = inode.zone[slot] ?? 0;
    this.checkZone(zone, what);
    for (const step of steps) {
      if (zone === 0) return 0;
      zone = await this.pointerAt(zone, step);
      this.checkZone(zone, what);
    }
    return zone;
  }

  /**
   * Zones of file blocks [first, first+count). Each indirect block on the way is read once for
   * the whole run (a run of a large file needs a few, not one per block), and a cached one without
   * waiting.
   */
  async zonesOf(inode: Inode, first: number, count: number, what: string): Promise<number[]> {
    const out = new Array<number>(count);
    const seen = new Map<number, DataView>();
    const load = async (zone: number): Promise<DataView> => {
      const data = this.cache.peek(zone) ?? (await this.cache.read(zone));
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      seen.set(zone, v);
      return v;
    };
    for (let i = 0; i < count; i++) {
      const { slot, steps } = this.pathOf(first + i, what);
      let zone = inode.zone[slot] ?? 0;
      this.checkZone(zone, what);
      for (const step of steps) {
        if (zone === 0) break;
        const v = seen.get(zone) ?? (await load(zone));
        zone = v.getUint32(step * 4, true);
        this.checkZone(zone, what);
      }
      out[i] = zone;
    }
    return out;
  }

  /**
   * The single-indirect blocks that map file blocks [first, first+count) (to fetch them early,
   * joined with data reads); reads the double and triple indirect blocks it needs.
   */
  async indirectsOf(inode: Inode, first: number, count: number, what: string): Promise<number[]> {
    const out = new Set<number>();
    const p = this.ptrs;
    for (let index = first; index < first + count; ) {
      if (index < DIRECT_ZONES) {
        index = DIRECT_ZONES;
        continue;
      }
      const { slot, steps } = this.pathOf(index, what);
      let zone = inode.zone[slot] ?? 0;
      this.checkZone(zone, what);
      // Walk down to the single-indirect level (all but the last step).
      for (let level = 0; level < steps.length - 1 && zone !== 0; level++) {
        zone = await this.pointerAt(zone, steps[level] ?? 0);
        this.checkZone(zone, what);
      }
      if (zone !== 0) out.add(zone);
      // Next index at the start of the following single-indirect block.
      const inLast = steps[steps.length - 1] ?? 0;
      index += p - inLast;
    }
    return [...out];
  }

  /** A free zone, marked used; EDVSNOSPC when none is left. */
  async allocateZone(what: string): Promise<number> {
    const bit = await this.zmap.allocate();
    if (bit === undefined) throw new DvsError('EDVSNOSPC', `${what}: no free zone`, { details: { path: what } });
    return this.sb.firstDataZone + bit - 1;
  }

  async freeZone(zone: number): Promise<void> {
    await this.zmap.release(zone - this.sb.firstDataZone + 1);
  }

  /**
   * The zone of file block `index`, allocating it (and any missing indirect block) when it is a
   * hole. `inode.zone` is updated in place; the caller writes the inode back. A new data zone is
   * returned with `fresh` set and is not yet in the cache: the caller fills it.
   */
  async ensureZone(inode: Inode, index: number, what: string): Promise<{ zone: number; fresh: boolean }> {
    const { slot, steps } = this.pathOf(index, what);
    let zone = inode.zone[slot] ?? 0;
    this.checkZone(zone, what);
    let fresh = false;
    if (zone === 0) {
      zone = await this.allocateZone(what);
      inode.zone[slot] = zone;
      fresh = true;
      // An indirect block starts as all holes; a data zone is left to the caller.
      if (steps.length > 0) this.cache.fresh(zone);
    }
    for (let level = 0; level < steps.length; level++) {
      const step = steps[level] ?? 0;
      const parent = zone;
      let child = fresh ? 0 : await this.pointerAt(parent, step);
      this.checkZone(child, what);
      if (child === 0) {
        const allocated = await this.allocateZone(what);
        child = allocated;
        fresh = true;
        await this.cache.modify(parent, (d) => new DataView(d.buffer, d.byteOffset, d.byteLength).setUint32(step * 4, allocated, true));
        if (level < steps.length - 1) this.cache.fresh(child);
      } else {
        fresh = false;
      }
      zone = child;
    }
    return { zone, fresh };
  }

  /** Frees every zone holding file blocks >= `from`, and indirect blocks left empty; updates `inode.zone`. */
  async freeFrom(inode: Inode, from: number, what: string): Promise<void> {
    for (let slot = 0; slot < DIRECT_ZONES; slot++) {
      const zone = inode.zone[slot] ?? 0;
      if (slot >= from && zone !== 0) {
        this.checkZone(zone, what);
        await this.freeZone(zone);
        inode.zone[slot] = 0;
      }
    }
    let base = DIRECT_ZONES;
    for (let depth = 1; depth <= 3; depth++) {
      const slot = DIRECT_ZONES + depth - 1;
      const zone = inode.zone[slot] ?? 0;
      if (zone !== 0 && (await this.freeTree(zone, depth, base, from, what))) inode.zone[slot] = 0;
      base += this.ptrs ** depth;
    }
  }

  /** Frees what lies at or past `from` under `zone` (covering file blocks from `base`); true when `zone` itself was freed. */
  private async freeTree(zone: number, depth: number, base: number, from: number, what: string): Promise<boolean> {
    if (from >= base + this.ptrs ** depth) return false;
    this.checkZone(zone, what);
    if (depth === 0) {
      await this.freeZone(zone);
      return true;
    }
    const data = await this.cache.read(zone);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const children: number[] = [];
    for (let j = 0; j < this.ptrs; j++) children.push(view.getUint32(j * 4, true));
    const childSpan = this.ptrs ** (depth - 1);
    let kept = false;
    const cleared: number[] = [];
    for (let j = 0; j < this.ptrs; j++) {
      const child = children[j] ?? 0;
      if (child === 0) continue;
      if (await this.freeTree(child, depth - 1, base + j * childSpan, from, what)) cleared.push(j);
      else kept = true;
    }
    if (!kept) {
      await this.freeZone(zone);
      return true;
    }
    if (cleared.length > 0) {
      await this.cache.modify(zone, (d) => {
        const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
        for (const j of cleared) v.setUint32(j * 4, 0, true);
      });
    }
    return false;
  }
}
