/**
 * What NWEB needs from a file system (docs/vos/nweb.md): stat, read and readdir over absolute,
 * normalised site paths. The real one is an adapter to a file-system server reached by message
 * passing, so every call may cost a network round trip; the server keeps the calls per request few.
 */
export type WebFileKind = 'file' | 'dir' | 'other';
export interface WebStat { readonly kind: WebFileKind; readonly size: number; readonly mtime: number /* seconds */; readonly ino: number }
export interface WebFiles {
  /** undefined when the path does not exist (any other failure rejects). */
  stat(path: string): Promise<WebStat | undefined>;
  /** Up to `length` bytes at `offset` of the file at `path` (fewer only at its end). */
  read(path: string, offset: number, length: number): Promise<Uint8Array>;
  readdir(path: string): Promise<readonly { readonly name: string; readonly kind: WebFileKind }[]>;
}
