/**
 * The pure rules of NWEB, one module at a time: Range and If-Range, validators and preconditions,
 * Content-Type by extension, the directory listing's escaping and order, and the small-file cache.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { etagOf, evaluatePreconditions, lastModifiedOf, parseEtagList } from '../../../src/vos/nweb/conditional.js';
import { contentTypeFor } from '../../../src/vos/nweb/content-types.js';
import { renderDirIndex, sortEntries } from '../../../src/vos/nweb/dir-index.js';
import { SmallFileCache } from '../../../src/vos/nweb/file-cache.js';
import { decideRange, ifRangeHolds } from '../../../src/vos/nweb/ranges.js';
import type { WebStat } from '../../../src/vos/nweb/web-files.js';

describe('decideRange', () => {
  it('reads the three forms and clamps to the file', () => {
    expect(decideRange('bytes=0-9', 100)).toEqual({ kind: 'partial', spans: [{ start: 0, end: 9 }] });
    expect(decideRange('bytes=90-', 100)).toEqual({ kind: 'partial', spans: [{ start: 90, end: 99 }] });
    expect(decideRange('bytes=-10', 100)).toEqual({ kind: 'partial', spans: [{ start: 90, end: 99 }] });
    expect(decideRange('bytes=-500', 100)).toEqual({ kind: 'partial', spans: [{ start: 0, end: 99 }] });
    expect(decideRange('bytes=50-5000', 100)).toEqual({ kind: 'partial', spans: [{ start: 50, end: 99 }] });
    expect(decideRange('Bytes = 1-2 , 4-5', 100)).toEqual({ kind: 'partial', spans: [{ start: 1, end: 2 }, { start: 4, end: 5 }] });
  });

  it('drops unsatisfiable members and says 416 only when none is left', () => {
    expect(decideRange('bytes=200-300, 1-1', 100)).toEqual({ kind: 'partial', spans: [{ start: 1, end: 1 }] });
    expect(decideRange('bytes=100-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=-0', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=0-0', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=-5', 0)).toEqual({ kind: 'unsatisfiable' });
  });

  it.each(['bytes=5-1', 'bytes=a-b', 'bytes=1', 'items=0-1', 'bytes=', 'bytes=--1', 'bytes=1-2-3', 'bytes=0x1-2', 'bytes=-', '0-1', 'bytes=1.5-2'])(
    'ignores malformed %j (whole file)',
    (header) => {
      expect(decideRange(header, 100)).toEqual({ kind: 'whole' });
    },
  );

  it('serves a range set above the cap whole', () => {
    const many = `bytes=${Array.from({ length: 17 }, (_, i) => `${i}-${i}`).join(',')}`;
    expect(decideRange(many, 100, 16)).toEqual({ kind: 'whole' });
    expect(decideRange(many, 100, 17).kind).toBe('partial');
  });

  it('property: every span lies inside the file', () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.array(fc.tuple(fc.option(fc.nat(2000)), fc.option(fc.nat(2000))), { minLength: 1, maxLength: 20 }), (size, pairs) => {
        const header = `bytes=${pairs.map(([a, b]) => `${a ?? ''}-${b ?? ''}`).join(',')}`;
        const d = decideRange(header, size);
        if (d.kind === 'partial') for (const s of d.spans) expect(0 <= s.start && s.start <= s.end && s.end < size).toBe(true);
      }),
    );
  });
});

const stat: WebStat = { kind: 'file', size: 1234, mtime: 1_700_000_000.75, ino: 42 };
const etag = etagOf(stat);
const lastModified = lastModifiedOf(stat);
const before = new Date((1_700_000_000 - 60) * 1000).toUTCString();
const after = new Date((1_700_000_000 + 60) * 1000).toUTCString();

describe('validators and preconditions', () => {
  it('makes a strong ETag from ino, size and mtime', () => {
    expect(etag).toMatch(/^"[0-9a-z-]+"$/);
    expect(etagOf({ ...stat, ino: 43 })).not.toBe(etag);
    expect(etagOf({ ...stat, size: 1235 })).not.toBe(etag);
    expect(etagOf({ ...stat, mtime: stat.mtime + 1 })).not.toBe(etag);
    expect(lastModified).toBe('Tue, 14 Nov 2023 22:13:20 GMT');
  });

  it('parses entity-tag lists', () => {
    expect(parseEtagList(' * ')).toEqual(['*']);
    expect(parseEtagList('"a", W/"b",junk, "c"')).toEqual(['"a"', 'W/"b"', '"c"']);
  });

  it('answers 304 for If-None-Match (weak compare) and If-Modified-Since', () => {
    expect(evaluatePreconditions({ ifNoneMatch: etag }, stat)).toBe(304);
    expect(evaluatePreconditions({ ifNoneMatch: `"x", W/${etag}` }, stat)).toBe(304);
    expect(evaluatePreconditions({ ifNoneMatch: '*' }, stat)).toBe(304);
    expect(evaluatePreconditions({ ifNoneMatch: '"other"' }, stat)).toBe('proceed');
    expect(evaluatePreconditions({ ifModifiedSince: lastModified }, stat)).toBe(304);
    expect(evaluatePreconditions({ ifModifiedSince: after }, stat)).toBe(304);
    expect(evaluatePreconditions({ ifModifiedSince: before }, stat)).toBe('proceed');
    expect(evaluatePreconditions({ ifModifiedSince: 'not a date' }, stat)).toBe('proceed');
    // If-None-Match wins over If-Modified-Since.
    expect(evaluatePreconditions({ ifNoneMatch: '"other"', ifModifiedSince: after }, stat)).toBe('proceed');
  });

  it('answers 412 for a failing If-Match (strong compare) or If-Unmodified-Since', () => {
    expect(evaluatePreconditions({ ifMatch: '"other"' }, stat)).toBe(412);
    expect(evaluatePreconditions({ ifMatch: `W/${etag}` }, stat)).toBe(412);
    expect(evaluatePreconditions({ ifMatch: etag }, stat)).toBe('proceed');
    expect(evaluatePreconditions({ ifMatch: '*' }, stat)).toBe('proceed');
    expect(evaluatePreconditions({ ifUnmodifiedSince: before }, stat)).toBe(412);
    expect(evaluatePreconditions({ ifUnmodifiedSince: lastModified }, stat)).toBe('proceed');
    // If-Match wins over If-Unmodified-Since.
    expect(evaluatePreconditions({ ifMatch: etag, ifUnmodifiedSince: before }, stat)).toBe('proceed');
  });

  it('lets If-Range apply the Range only on an exact strong validator', () => {
    expect(ifRangeHolds(undefined, etag, lastModified)).toBe(true);
    expect(ifRangeHolds(etag, etag, lastModified)).toBe(true);
    expect(ifRangeHolds('"other"', etag, lastModified)).toBe(false);
    expect(ifRangeHolds(`W/${etag}`, etag, lastModified)).toBe(false);
    expect(ifRangeHolds(lastModified, etag, lastModified)).toBe(true);
    expect(ifRangeHolds(before, etag, lastModified)).toBe(false);
    expect(ifRangeHolds('garbage', etag, lastModified)).toBe(false);
  });
});

describe('contentTypeFor', () => {
  it.each([
    ['/a/index.html', 'text/html; charset=utf-8'],
    ['/s.CSS', 'text/css; charset=utf-8'],
    ['/app.js', 'text/javascript; charset=utf-8'],
    ['/m.mjs', 'text/javascript; charset=utf-8'],
    ['/d.json', 'application/json; charset=utf-8'],
    ['/r.txt', 'text/plain; charset=utf-8'],
    ['/i.svg', 'image/svg+xml; charset=utf-8'],
    ['/x.xml', 'application/xml; charset=utf-8'],
    ['/p.png', 'image/png'],
    ['/p.jpg', 'image/jpeg'],
    ['/p.gif', 'image/gif'],
    ['/p.webp', 'image/webp'],
    ['/favicon.ico', 'image/x-icon'],
    ['/m.wasm', 'application/wasm'],
    ['/d.pdf', 'application/pdf'],
    ['/f.woff2', 'font/woff2'],
    ['/noext', 'application/octet-stream'],
    ['/.hidden', 'application/octet-stream'],
    ['/a.html/b', 'application/octet-stream'],
    ['/x.constructor', 'application/octet-stream'],
    ['/x.unknown', 'application/octet-stream'],
  ])('%s → %s', (path, type) => {
    expect(contentTypeFor(path)).toBe(type);
  });
});

describe('directory listing', () => {
  const entries = [
    { name: 'b.txt', kind: 'file' as const },
    { name: 'zdir', kind: 'dir' as const },
    { name: '<script>alert(1)<\\script>&"\'', kind: 'file' as const },
    { name: 'sub/name', kind: 'file' as const },
    { name: 'a dir', kind: 'dir' as const },
    { name: '..', kind: 'dir' as const },
    { name: 'A.txt', kind: 'file' as const },
  ];

  it('sorts directories first, then by code point, dropping . and ..', () => {
    expect(sortEntries(entries).map((e) => e.name)).toEqual(['a dir', 'zdir', '<script>alert(1)<\\script>&"\'', 'A.txt', 'b.txt']);
  });

  it('escapes names in text and encodes them in links', () => {
    const html = renderDirIndex('/x<y>', entries);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;\\script&#62;&#38;&#34;&#39;');
    expect(html).toContain('href="./%3Cscript%3Ealert%281%29%3C%5Cscript%3E%26%22%27"');
    expect(html).toContain('href="./a%20dir/"');
    expect(html).not.toContain('sub/name');
    expect(html).toContain('Index of /x&#60;y&#62;/');
    expect(html).toContain('href="../"');
    expect(renderDirIndex('/', [])).not.toContain('href="../"');
  });
});

describe('SmallFileCache', () => {
  const v = (size: number, mtime = 1): WebStat => ({ kind: 'file', size, mtime, ino: 7 });
  it('hits only the exact version it holds', () => {
    const cache = new SmallFileCache(100, 1000);
    cache.set('/a', v(3), new Uint8Array([1, 2, 3]));
    expect(cache.get('/a', v(3))).toEqual(new Uint8Array([1, 2, 3]));
    expect(cache.get('/a', v(3, 2))).toBeUndefined();
    // The stale entry is gone, not kept beside the new version.
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  it('refuses big files and evicts the least recently used by bytes', () => {
    const cache = new SmallFileCache(100, 250);
    cache.set('/big', v(101), new Uint8Array(101));
    expect(cache.size).toBe(0);
    cache.set('/1', v(100), new Uint8Array(100));
    cache.set('/2', v(100), new Uint8Array(100));
    expect(cache.get('/1', v(100))).toBeDefined();
    cache.set('/3', v(100), new Uint8Array(100));
    expect(cache.get('/2', v(100))).toBeUndefined();
    expect(cache.get('/1', v(100))).toBeDefined();
    expect(cache.get('/3', v(100))).toBeDefined();
    expect(cache.bytes).toBe(200);
  });
});
