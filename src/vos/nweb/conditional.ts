/**
 * Validators and conditional requests (RFC 9110 §8.8, §13). The ETag is strong and derived from
 * (ino, size, mtime) alone, so every node serving the same file computes the same one without
 * reading it. Preconditions are evaluated in the RFC's order: If-Match, else If-Unmodified-Since;
 * then If-None-Match, else If-Modified-Since.
 */
import type { WebStat } from './web-files.js';

/** A strong entity tag for a file version. */
export function etagOf(stat: WebStat): string {
  return `"${stat.ino.toString(36)}-${stat.size.toString(36)}-${Math.floor(stat.mtime).toString(36)}"`;
}

/** The Last-Modified value (an IMF-fixdate) of a file version. */
export function lastModifiedOf(stat: WebStat): string {
  return new Date(Math.floor(stat.mtime) * 1000).toUTCString();
}

/** The entity tags of an If-Match / If-None-Match value, `*` as itself; malformed members are dropped. */
export function parseEtagList(header: string): string[] {
  const value = header.trim();
  if (value === '*') return ['*'];
  return value.match(/(?:W\/)?"[^"]*"/g) ?? [];
}

const opaque = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** Strong comparison: both strong and equal. */
function strongMatch(list: readonly string[], etag: string): boolean {
  return list.some((t) => t === '*' || (!t.startsWith('W/') && t === etag));
}

/** Weak comparison: equal once any W/ is dropped. */
function weakMatch(list: readonly string[], etag: string): boolean {
  return list.some((t) => t === '*' || opaque(t) === opaque(etag));
}

/** An HTTP-date in seconds, or undefined if it does not parse. */
function dateSeconds(header: string): number | undefined {
  const ms = Date.parse(header);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

export interface ConditionalHeaders {
  readonly ifMatch?: string | undefined;
  readonly ifNoneMatch?: string | undefined;
  readonly ifModifiedSince?: string | undefined;
  readonly ifUnmodifiedSince?: string | undefined;
}

/** What the preconditions say for a GET or HEAD of an existing file: go on, 304, or 412. */
export function evaluatePreconditions(h: ConditionalHeaders, stat: WebStat): 'proceed' | 304 | 412 {
  const etag = etagOf(stat);
  const modified = Math.floor(stat.mtime);
  if (h.ifMatch !== undefined) {
    if (!strongMatch(parseEtagList(h.ifMatch), etag)) return 412;
  } else if (h.ifUnmodifiedSince !== undefined) {
    const since = dateSeconds(h.ifUnmodifiedSince);
    if (since !== undefined && modified > since) return 412;
  }
  if (h.ifNoneMatch !== undefined) {
    if (weakMatch(parseEtagList(h.ifNoneMatch), etag)) return 304;
  } else if (h.ifModifiedSince !== undefined) {
    const since = dateSeconds(h.ifModifiedSince);
    if (since !== undefined && modified <= since) return 304;
  }
  return 'proceed';
}
