/**
 * The inode and zone bitmaps: bit n set = in use, bit 0 always set (reserved, so 0 can mean
 * "none"). Inode bit n is inode n; zone bit n is zone s_firstdatazone + n - 1. Bits past the last
 * real one are set by mkfs and never handed out here. Allocation takes the lowest free bit; a hint
 * (a lower bound of the lowest free bit) keeps the scan from starting at 0 each time.
 */
import { DvsError } from '../../../ipc/errors.js';
import type { BlockCache } from '../block-cache.js';

export class Bitmap {
  private searchFrom = 1;
  private freeCount: number | undefined;

  constructor(
    private readonly cache: BlockCache,
    readonly name: 'inode' | 'zone',
    private readonly startBlock: number,
    /** Highest valid bit (inclusive). */
    readonly lastBit: number,
  ) {}

  private get bitsPerBlock(): number {
    return this.cache.blockSize * 8;
  }

  async isSet(bit: number): Promise<boolean> {
    const block = await this.cache.read(this.startBlock + Math.floor(bit / this.bitsPerBlock));
    const inBlock = bit % this.bitsPerBlock;
    return ((block[inBlock >> 3] ?? 0) & (1 << (inBlock & 7))) !== 0;
  }

  /** Sets and returns the lowest clear bit in 1..lastBit, or undefined when none is left. */
  async allocate(): Promise<number | undefined> {
    const bpb = this.bitsPerBlock;
    let bit = this.searchFrom;
    while (bit <= this.lastBit) {
      const blockIndex = Math.floor(bit / bpb);
      const data = await this.cache.read(this.startBlock + blockIndex);
      const blockEnd = Math.min((blockIndex + 1) * bpb - 1, this.lastBit);
      for (; bit <= blockEnd; bit++) {
        const inBlock = bit - blockIndex * bpb;
        const byte = data[inBlock >> 3] ?? 0xff;
        if (byte === 0xff && (inBlock & 7) === 0 && bit + 7 <= blockEnd) {
          bit += 7;
          continue;
        }
        if ((byte & (1 << (inBlock & 7))) === 0) {
          const found = bit;
          await this.cache.modify(this.startBlock + blockIndex, (d) => {
            d[inBlock >> 3] = (d[inBlock >> 3] ?? 0) | (1 << (inBlock & 7));
          });
          this.searchFrom = found + 1;
          if (this.freeCount !== undefined) this.freeCount--;
          return found;
        }
      }
    }
    this.searchFrom = this.lastBit + 1;
    return undefined;
  }

  /** Clears `bit`; clearing a clear bit means the structures disagree, reported as EDVSIO. */
  async release(bit: number): Promise<void> {
    if (bit < 1 || bit > this.lastBit) {
      throw new DvsError('EDVSIO', `${this.name} bitmap: bit ${bit} outside 1..${this.lastBit}`, { details: { bitmap: this.name, bit } });
    }
    const bpb = this.bitsPerBlock;
    const inBlock = bit % bpb;
    let wasSet = true;
    await this.cache.modify(this.startBlock + Math.floor(bit / bpb), (d) => {
      const byte = d[inBlock >> 3] ?? 0;
      wasSet = (byte & (1 << (inBlock & 7))) !== 0;
      d[inBlock >> 3] = byte & ~(1 << (inBlock & 7));
    });
    if (!wasSet) {
      throw new DvsError('EDVSIO', `${this.name} bitmap: bit ${bit} freed twice`, { details: { bitmap: this.name, bit } });
    }
    if (bit < this.searchFrom) this.searchFrom = bit;
    if (this.freeCount !== undefined) this.freeCount++;
  }

  /** Clear bits in 1..lastBit (counted once, then kept up to date). */
  async countFree(): Promise<number> {
    if (this.freeCount !== undefined) return this.freeCount;
    const bpb = this.bitsPerBlock;
    let free = 0;
    for (let blockIndex = 0; blockIndex * bpb <= this.lastBit; blockIndex++) {
      const data = await this.cache.read(this.startBlock + blockIndex);
      const first = Math.max(1, blockIndex * bpb);
      const last = Math.min((blockIndex + 1) * bpb - 1, this.lastBit);
      for (let bit = first; bit <= last; bit++) {
        const inBlock = bit - blockIndex * bpb;
        if (((data[inBlock >> 3] ?? 0xff) & (1 << (inBlock & 7))) === 0) free++;
      }
    }
    this.freeCount = free;
    return free;
  }

  /** Forgets the count and the hint (the blocks underneath were replaced). */
  reset(): void {
    this.freeCount = undefined;
    this.searchFrom = 1;
  }
}
