/**
 * The site NWEB serves, as files of the DC's FS: WebFiles over FS requests from NWEB's endpoint.
 * That endpoint makes one call at a time, so the HTTP connections' calls queue here; a missing
 * path is undefined, not an error (it becomes a 404).
 */
import type { M3Ipc } from '../../ipc/calls.js';
import { isDvsError } from '../../ipc/errors.js';
import { FsClient } from '../fs/fs-client.js';
import type { FsKind } from '../fs/fs-messages.js';
import { Serial } from '../serial.js';
import type { PeerRef } from '../slot-peer.js';
import type { WebFileKind, WebFiles, WebStat } from './web-files.js';

function kindOf(k: FsKind): WebFileKind {
  return k === 'file' || k === 'dir' ? k : 'other';
}

export class FsWebFiles implements WebFiles {
  private readonly fs: FsClient;
  private readonly calls = new Serial();
  private readonly root: string;

  /** `root`: the FS directory the site's `/` is. */
  constructor(ipc: M3Ipc, fs: PeerRef, root = '/', timeoutMs?: number) {
    this.fs = new FsClient(ipc, fs, timeoutMs);
    this.root = root === '/' ? '' : root.replace(/\/+$/, '');
  }

  stat(path: string): Promise<WebStat | undefined> {
    return this.calls.run(async () => {
      try {
        const s = await this.fs.stat(this.root + path);
        return { kind: kindOf(s.kind), size: s.size, mtime: s.mtime, ino: s.ino };
      } catch (err) {
        if (isDvsError(err, 'EDVSNOENT') || isDvsError(err, 'EDVSNOTDIR') || isDvsError(err, 'EDVSNAMETOOLONG')) return undefined;
        throw err;
      }
    });
  }

  read(path: string, offset: number, length: number): Promise<Uint8Array> {
    return this.calls.run(() => this.fs.read({ path: this.root + path }, offset, length));
  }

  readdir(path: string): Promise<readonly { readonly name: string; readonly kind: WebFileKind }[]> {
    return this.calls.run(async () => (await this.fs.readdir(this.root + path === '' ? '/' : this.root + path)).map((e) => ({ name: e.name, kind: kindOf(e.kind) })));
  }
}
