/**
 * The HTML listing of a directory without index.html. Names come from the file system and may hold
 * any character, so every name is HTML-escaped in text and percent-encoded in its link; order is
 * fixed (directories first, then by code point) so the page is the same on every node.
 */
import { encodeSegment } from './http-paths.js';
import type { WebFileKind } from './web-files.js';

export interface DirEntry {
  readonly name: string;
  readonly kind: WebFileKind;
}

/** HTML text escaping, quotes included (names also go into attributes). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Entries to list: sorted, dirs first, without names no link could name. */
export function sortEntries(entries: readonly DirEntry[]): DirEntry[] {
  return entries
    .filter((e) => e.name !== '' && e.name !== '.' && e.name !== '..' && !e.name.includes('/'))
    .slice()
    .sort((a, b) => (a.kind === 'dir') !== (b.kind === 'dir') ? (a.kind === 'dir' ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** The listing page of the directory at site path `dir` (`/` or `/a/b`). */
export function renderDirIndex(dir: string, entries: readonly DirEntry[]): string {
  const title = escapeHtml(dir === '/' ? '/' : `${dir}/`);
  const rows = sortEntries(entries).map((e) => {
    const slash = e.kind === 'dir' ? '/' : '';
    return `<li><a href="./${escapeHtml(encodeSegment(e.name))}${slash}">${escapeHtml(e.name)}${slash}</a></li>`;
  });
  if (dir !== '/') rows.unshift('<li><a href="../">../</a></li>');
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of ${title}</title></head>\n<body><h1>Index of ${title}</h1>\n<ul>\n${rows.join('\n')}\n</ul></body></html>\n`;
}
