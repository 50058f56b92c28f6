/**
 * Request target → site path (docs/vos/nweb.md, "Paths"). The one place that decides which file a
 * URL names, so the traversal rule lives here alone: percent-decoding happens once, per segment,
 * and anything that could still mean "up", "another separator" or "decode me again" is refused
 * rather than repaired. The result is always absolute and normalised: `/`, or `/` + segments that
 * are never empty, `.` or `..`.
 */

/** A target NWEB will serve: the site path, the raw query (without `?`), and whether it ended in `/`. */
export interface SiteTarget {
  readonly ok: true;
  readonly path: string;
  readonly query: string | undefined;
  readonly trailingSlash: boolean;
}

/** A target refused: 400 (malformed, traversal) or 414 (too long). `reason` is for logs, never for the client. */
export interface RefusedTarget {
  readonly ok: false;
  readonly status: 400 | 414;
  readonly reason: string;
}

export type ParsedTarget = SiteTarget | RefusedTarget;

export const DEFAULT_MAX_URL_LENGTH = 8192;

const refuse = (reason: string, status: 400 | 414 = 400): RefusedTarget => ({ ok: false, status, reason });

/** Printable ASCII without space: what may appear raw in a request target (RFC 3986 plus a few lenient bytes). */
const RAW_TARGET = /^[\x21-\x7e]*$/;
/** Control bytes (C0 and DEL), once decoded. */
const CONTROL = /[\x00-\x1f\x7f]/;
/** An encoded dot, slash or backslash left after one decode: a double-encoding attempt. */
const STILL_ENCODED = /%(2e|2f|5c)/i;
const HEX = /^[0-9a-fA-F]{2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decode one raw segment: undefined when its percent-encoding or UTF-8 is malformed. */
function decodeSegment(raw: string): string | undefined {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== '%') {
      bytes.push(raw.charCodeAt(i));
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return undefined;
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  try {
    return utf8.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

/**
 * Parse an origin-form target (`/a/b?q`), or an absolute-form one (`http://host/a`) whose authority
 * is `host` (the Host header); any other form is refused.
 */
export function parseTarget(target: string, host?: string, maxLength = DEFAULT_MAX_URL_LENGTH): ParsedTarget {
  if (target.length > maxLength) return refuse('target too long', 414);
  if (!RAW_TARGET.test(target)) return refuse('raw space, control or non-ASCII byte in the target');
  let rest = target;
  if (!rest.startsWith('/')) {
    const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(rest);
    if (absolute === null) return refuse('target is neither origin-form nor absolute-form');
    const [, authority = '', tail = ''] = absolute;
    if (host === undefined || authority.toLowerCase() !== host.toLowerCase()) return refuse('absolute-form target names another host');
    rest = tail.startsWith('/') ? tail : `/${tail}`;
  }
  if (rest.includes('#')) return refuse('fragment in the target');
  if (rest.includes('\\')) return refuse('backslash in the target');
  const q = rest.indexOf('?');
  const rawPath = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? undefined : rest.slice(q + 1);
  const segments: string[] = [];
  for (const raw of rawPath.split('/')) {
    const segment = decodeSegment(raw);
    if (segment === undefined) return refuse('bad percent-encoding');
    if (CONTROL.test(segment)) return refuse('control byte in the path');
    if (segment.includes('/') || segment.includes('\\')) return refuse('encoded slash or backslash');
    if (STILL_ENCODED.test(segment)) return refuse('double-encoded dot, slash or backslash');
    if (segment === '..') return refuse('dot-dot segment');
    if (segment === '' || segment === '.') continue;
    segments.push(segment);
  }
  return { ok: true, path: `/${segments.join('/')}`, query, trailingSlash: rawPath.endsWith('/') };
}

/** A site path as an origin-form URL path, each segment percent-encoded (for Location and links). */
export function sitePathToUrl(path: string): string {
  return path.split('/').map(encodeSegment).join('/');
}

/** One path segment percent-encoded: RFC 3986 pchar kept, everything else encoded. */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
