/**
 * URL → site path: decoding, normalisation, and the traversal rule (every encoded or doubled form
 * of `..`, `/` and `\` refused), with a property over random targets that any accepted one names a
 * normalised absolute path inside the site.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeSegment, parseTarget, sitePathToUrl } from '../../../src/vos/nweb/http-paths.js';

const pathOf = (target: string): string | number => {
  const r = parseTarget(target, 'example.test');
  return r.ok ? r.path : r.status;
};

/** What every accepted path must look like. */
function isNormalised(path: string): boolean {
  if (path === '/') return true;
  if (!path.startsWith('/') || path.endsWith('/')) return false;
  return path.slice(1).split('/').every((s) => s !== '' && s !== '.' && s !== '..' && !s.includes('\\') && !/[\x00-\x1f\x7f]/.test(s));
}

describe('parseTarget', () => {
  it('decodes and normalises ordinary targets', () => {
    expect(parseTarget('/', undefined)).toEqual({ ok: true, path: '/', query: undefined, trailingSlash: true });
    expect(parseTarget('/a/b.html?x=1&y', undefined)).toEqual({ ok: true, path: '/a/b.html', query: 'x=1&y', trailingSlash: false });
    expect(pathOf('/a%20b/c%C3%A9.txt')).toBe('/a b/cé.txt');
    expect(pathOf('//a///b/')).toBe('/a/b');
    expect(pathOf('/a/./b/.')).toBe('/a/b');
    expect(parseTarget('/dir/', undefined)).toMatchObject({ path: '/dir', trailingSlash: true });
  });

  it('accepts absolute-form for its own host only', () => {
    expect(pathOf('http://example.test/a')).toBe('/a');
    expect(pathOf('http://EXAMPLE.test')).toBe('/');
    expect(pathOf('http://other.test/a')).toBe(400);
    expect(pathOf('*')).toBe(400);
    expect(pathOf('a/b')).toBe(400);
  });

  it.each([
    '/../etc/passwd', '/a/../../b', '/a/..', '/%2e%2e/x', '/%2E./x', '/.%2e/x', '/%2E%2E', '/a%2f..%2fb', '/a%2F%2E%2E',
    '/a%5c..%5cb', '/a\\..\\b', '/a\\b', '/%252e%252e%252fetc', '/%252E%252E/x', '/a%255cb', '/a%252fb',
  ])('refuses traversal %s with 400', (target) => {
    expect(pathOf(target)).toBe(400);
  });

  it.each(['/a%00b', '/a%0ab', '/a%7f', '/a%zz', '/a%4', '/a%', '/%c3%28', '/a b', '/a\u0000b', '/a#frag', '/caf\u00e9'])('refuses malformed %j with 400', (target) => {
    expect(pathOf(target)).toBe(400);
  });

  it('refuses a target over the length limit with 414', () => {
    expect(parseTarget(`/${'a'.repeat(100)}`, undefined, 50)).toMatchObject({ ok: false, status: 414 });
    expect(parseTarget(`/${'a'.repeat(40)}`, undefined, 50)).toMatchObject({ ok: true });
  });

  it('property: an accepted target is always normalised, absolute and without ..', () => {
    const piece = fc.constantFrom('/', '.', '..', '%2e', '%2E', '%2f', '%5c', '%25', '%252e', '\\', 'a', 'b', '%00', '%', '?', '%c3%a9', '%41');
    const target = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${s}`),
      fc.array(piece, { maxLength: 16 }).map((p) => `/${p.join('')}`),
      fc.array(piece, { maxLength: 16 }).map((p) => p.join('')),
    );
    fc.assert(
      fc.property(target, (t) => {
        const r = parseTarget(t, 'h');
        if (r.ok) expect(isNormalised(r.path), `${JSON.stringify(t)} → ${r.path}`).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: a site path survives the round trip through its URL', () => {
    const segment = fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s !== '.' && s !== '..' && !/[/\\\x00-\x1f\x7f%]/.test(s));
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 5 }), (segments) => {
        const path = `/${segments.join('/')}`;
        expect(pathOf(sitePathToUrl(path))).toBe(path);
      }),
    );
  });

  it('encodes the characters a segment may not carry raw', () => {
    expect(encodeSegment("a b'()*!?#%")).toBe('a%20b%27%28%29%2A%21%3F%23%25');
  });
});
