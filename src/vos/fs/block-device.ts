/**
 * The block device a file system sits on: an async byte-addressed store, because the FS server's
 * disk may be a network round trip away. Two local implementations: an image file (pread/pwrite)
 * and a Uint8Array for tests. Both refuse any access outside `[0, size)`: the library above must
 * never ask for one, and a refusal is how a test proves it.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { DvsError } from '../../ipc/errors.js';

export interface BlockDevice {
  /** Bytes on the device. */
  readonly size: number;
  /** `length` bytes at byte `offset`; offset+length <= size. */
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Durable: everything written before is on stable storage. */
  flush(): Promise<void>;
}

/** Throws EDVSIO unless `[offset, offset+length)` lies inside a device of `size` bytes. */
export function checkDeviceRange(size: number, offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new DvsError('EDVSIO', `${what} of ${length} bytes at ${offset} is outside the device [0, ${size})`, {
      details: { offset, length, size },
    });
  }
}

/** A device in memory; `bytes` is the live store, so a test can patch or inspect it. */
export class MemoryBlockDevice implements BlockDevice {
  readonly bytes: Uint8Array;

  constructor(sizeOrBytes: number | Uint8Array) {
    this.bytes = typeof sizeOrBytes === 'number' ? new Uint8Array(sizeOrBytes) : sizeOrBytes;
  }

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkDeviceRange(this.size, offset, length, 'read');
    return this.bytes.slice(offset, offset + length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkDeviceRange(this.size, offset, data.length, 'write');
    this.bytes.set(data, offset);
  }

  async flush(): Promise<void> {}
}

/** An image file through a FileHandle: positioned reads and writes, `flush` is fdatasync. */
export class FileBlockDevice implements BlockDevice {
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
    readonly path: string,
  ) {}

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<FileBlockDevice> {
    const readOnly = opts.readOnly ?? false;
    let handle: FileHandle;
    try {
      handle = await open(path, readOnly ? 'r' : 'r+');
    } catch (err) {
      throw new DvsError('EDVSIO', `cannot open image ${path}: ${(err as Error).message}`, { details: { path }, cause: err });
    }
    const { size } = await handle.stat();
    return new FileBlockDevice(handle, size, readOnly, path);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.checkOpen();
    checkDeviceRange(this.size, offset, length, 'read');
    const buf = new Uint8Array(length);
    let done = 0;
    // pread may return short counts; a zero count before the end means the file shrank under us.
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new DvsError('EDVSIO', `short read of ${this.path} at ${offset + done}`, { details: { path: this.path } });
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkOpen();
    if (this.readOnly) throw new DvsError('EDVSROFS', `image ${this.path} is open read-only`, { details: { path: this.path } });
    checkDeviceRange(this.size, offset, data.length, 'write');
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
    if (!this.readOnly) await this.handle.datasync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new DvsError('EDVSIO', `image ${this.path} is closed`, { details: { path: this.path } });
  }
}
