/**
 * The MINIX v3 superblock (1024 bytes into the device, little-endian) and the layout it implies:
 * block 0 boot, the superblock at byte 1024, then from block 2 the inode bitmap, the zone bitmap,
 * the inode table and the data zones. Everything the rest of the library trusts about the image is
 * checked here once, so a corrupt image is refused at mount with the field named, never a crash.
 */
import { DvsError } from '../../../ipc/errors.js';

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_BYTES = 32;
export const MINIX3_MAGIC = 0x4d5a;
/** Magics of the older versions, to say why such an image is refused. */
const OLDER_MAGICS = new Map([
  [0x137f, 'v1'],
  [0x138f, 'v1'],
  [0x2468, 'v2'],
  [0x2478, 'v2'],
]);
/** First block after boot block and superblock (MINIX's START_BLOCK). */
export const START_BLOCK = 2;
export const INODE_BYTES = 64;
export const DIRENT_BYTES = 64;
export const NAME_MAX = 60;
export const ROOT_INO = 1;
export const DIRECT_ZONES = 7;

export interface Superblock {
  readonly ninodes: number;
  readonly imapBlocks: number;
  readonly zmapBlocks: number;
  readonly firstDataZone: number;
  readonly logZoneSize: number;
  readonly maxSize: number;
  readonly zones: number;
  readonly blockSize: number;
  readonly diskVersion: number;
  /** Derived: first block of the zone bitmap, of the inode table, and inodes per block. */
  readonly zmapStart: number;
  readonly inodeTableStart: number;
  readonly inodeBlocks: number;
  readonly inodesPerBlock: number;
  /** Zone numbers per indirect block. */
  readonly pointersPerBlock: number;
  /** Largest file size: the lower of s_max_size and what triple indirection reaches. */
  readonly fileSizeLimit: number;
}

function corrupt(field: string, message: string): DvsError {
  return new DvsError('EDVSIO', `superblock: ${field} ${message}`, { details: { field } });
}

/** Parses and validates the superblock bytes (at least 32, from byte 1024) of a device of `deviceSize` bytes. */
export function parseSuperblock(bytes: Uint8Array, deviceSize: number): Superblock {
  if (bytes.length < SUPERBLOCK_BYTES) throw corrupt('device', `too small for a superblock (${deviceSize} bytes)`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint16(24, true);
  if (magic !== MINIX3_MAGIC) {
    const older = OLDER_MAGICS.get(v.getUint16(16, true));
    throw corrupt(
      's_magic',
      older === undefined
        ? `is 0x${magic.toString(16)}, not 0x4d5a (not a MINIX v3 file system)`
        : `says MINIX ${older}: only v3 is supported`,
    );
  }
  const ninodes = v.getUint32(0, true);
  const imapBlocks = v.getUint16(6, true);
  const zmapBlocks = v.getUint16(8, true);
  const firstDataZoneOnDisk = v.getUint16(10, true);
  const logZoneSize = v.getUint16(12, true);
  const maxSize = v.getUint32(16, true);
  const zones = v.getUint32(20, true);
  const blockSize = v.getUint16(28, true);
  const diskVersion = v.getUint8(30);

  if (blockSize < 1024 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    throw corrupt('s_blocksize', `is ${blockSize}, not a power of two in 1024..65536`);
  }
  if (logZoneSize !== 0) throw corrupt('s_log_zone_size', `is ${logZoneSize}: only zones of one block (0) are supported`);
  if (ninodes < 1 || ninodes === 0xffffffff) throw corrupt('s_ninodes', `is ${ninodes}`);
  const bitsPerBlock = blockSize * 8;
  if (imapBlocks * bitsPerBlock < ninodes + 1) throw corrupt('s_imap_blocks', `(${imapBlocks}) cannot hold ${ninodes} inodes`);
  const inodesPerBlock = blockSize / INODE_BYTES;
  const inodeBlocks = Math.ceil(ninodes / inodesPerBlock);
  const zmapStart = START_BLOCK + imapBlocks;
  const inodeTableStart = zmapStart + zmapBlocks;
  const metadataEnd = inodeTableStart + inodeBlocks;
  // MINIX writes 0 here when the number did not fit in 16 bits; it is then the end of the metadata.
  const firstDataZone = firstDataZoneOnDisk === 0 ? metadataEnd : firstDataZoneOnDisk;
  if (zones < 1 || zones * blockSize > deviceSize) {
    throw corrupt('s_zones', `(${zones} blocks of ${blockSize}) does not fit the device of ${deviceSize} bytes`);
  }
  if (firstDataZone < metadataEnd) {
    throw corrupt('s_firstdatazone', `(${firstDataZone}) lies inside the bitmaps and inode table, which end at block ${metadataEnd}`);
  }
  if (firstDataZone >= zones) throw corrupt('s_firstdatazone', `(${firstDataZone}) is not below s_zones (${zones})`);
  if (zmapBlocks * bitsPerBlock < zones - firstDataZone + 1) {
    throw corrupt('s_zmap_blocks', `(${zmapBlocks}) cannot hold ${zones - firstDataZone} zones`);
  }
  if (maxSize === 0) throw corrupt('s_max_size', 'is 0');
  const pointersPerBlock = blockSize / 4;
  const reachBlocks = DIRECT_ZONES + pointersPerBlock + pointersPerBlock ** 2 + pointersPerBlock ** 3;
  // i_size is a u32, so no file exceeds 2^32 - 1 whatever the superblock says.
  const fileSizeLimit = Math.min(maxSize, reachBlocks * blockSize, 0xffffffff);
  return {
    ninodes,
    imapBlocks,
    zmapBlocks,
    firstDataZone,
    logZoneSize,
    maxSize,
    zones,
    blockSize,
    diskVersion,
    zmapStart,
    inodeTableStart,
    inodeBlocks,
    inodesPerBlock,
    pointersPerBlock,
    fileSizeLimit,
  };
}
