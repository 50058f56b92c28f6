/**
 * Range and If-Range (RFC 9110 §14). A Range NWEB cannot or should not honour is ignored, never an
 * error: malformed syntax, another unit, or more than `maxRanges` ranges all get the whole file
 * (200). Only a well-formed byte range set none of whose ranges overlaps the file gets 416.
 */

/** An inclusive byte span of the file, `start <= end < size`. */
export interface ByteSpan {
  readonly start: number;
  readonly end: number;
}

export type RangeDecision =
  | { readonly kind: 'whole' }
  | { readonly kind: 'unsatisfiable' }
  | { readonly kind: 'partial'; readonly spans: readonly ByteSpan[] };

export const DEFAULT_MAX_RANGES = 16;

const WHOLE: RangeDecision = { kind: 'whole' };
const DIGITS = /^\d+$/;

/**
 * What to send for `header` (the Range field, undefined if absent) on a file of `size` bytes.
 * Ranges keep the client's order; a set of more than `maxRanges` (counted before dropping the
 * unsatisfiable ones) is served whole, which bounds the work one request can ask for.
 */
export function decideRange(header: string | undefined, size: number, maxRanges = DEFAULT_MAX_RANGES): RangeDecision {
  if (header === undefined) return WHOLE;
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return WHOLE;
  const items = header.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0 || items.length > maxRanges) return WHOLE;
  const spans: ByteSpan[] = [];
  for (const item of items) {
    const dash = item.indexOf('-');
    if (dash < 0) return WHOLE;
    const first = item.slice(0, dash).trim();
    const last = item.slice(dash + 1).trim();
    if (first === '') {
      // Suffix range: the last n bytes.
      if (!DIGITS.test(last)) return WHOLE;
      const n = Number(last);
      if (n > 0 && size > 0) spans.push({ start: Math.max(0, size - n), end: size - 1 });
      continue;
    }
    if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return WHOLE;
    const start = Number(first);
    const end = last === '' ? Infinity : Number(last);
    if (end < start) return WHOLE;
    if (start < size) spans.push({ start, end: Math.min(end, size - 1) });
  }
  return spans.length === 0 ? { kind: 'unsatisfiable' } : { kind: 'partial', spans };
}

/**
 * Whether If-Range lets the Range apply (RFC 9110 §13.1.5): absent, or a strong ETag equal to the
 * current one, or an HTTP-date equal to Last-Modified. A weak ETag or another date never matches.
 */
export function ifRangeHolds(header: string | undefined, etag: string, lastModified: string): boolean {
  if (header === undefined) return true;
  const value = header.trim();
  if (value.startsWith('"')) return value === etag;
  if (value.startsWith('W/')) return false;
  const date = Date.parse(value);
  return !Number.isNaN(date) && date === Date.parse(lastModified);
}

/** The Content-Range value of a span. */
export function contentRange(span: ByteSpan, size: number): string {
  return `bytes ${span.start}-${span.end}/${size}`;
}
