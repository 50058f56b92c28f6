/**
 * NWEB over real TCP with real clients (Node's fetch, curl, raw sockets): GET and HEAD, 405,
 * keep-alive and Connection: close, byte ranges (single, multipart, 416, malformed), validators and
 * 304/412/If-Range, directories (redirect, index.html, listing), the small-file cache's one-stat
 * cost, chunked streaming of a big file, and what a WebFiles failure looks like.
 */
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebServer, type WebServerOptions } from '../../../src/vos/nweb/web-server.js';
import { CountingFiles, curl, FsWebFiles, parseResponses, RawClient, rawExchange } from './helpers.js';

let site: FsWebFiles;
let files: CountingFiles;
let server: WebServer | undefined;
let base = '';
let port = 0;
const clients: RawClient[] = [];

const SMALL = Buffer.from('<!doctype html><p>hello</p>\n');
const DATA = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

async function start(opts: WebServerOptions = {}): Promise<WebServer> {
  server = new WebServer(files, opts);
  port = await server.listen(0);
  base = `http://127.0.0.1:${port}`;
  return server;
}

function raw(): RawClient {
  const c = new RawClient(port);
  clients.push(c);
  return c;
}

beforeEach(async () => {
  site = await FsWebFiles.temp();
  files = new CountingFiles(site);
  await writeFile(join(site.root, 'small.html'), SMALL);
  await writeFile(join(site.root, 'data.bin'), DATA);
  await writeFile(join(site.root, 'style.css'), 'p{}');
  await writeFile(join(site.root, 'empty.txt'), '');
  await mkdir(join(site.root, 'docs'));
  await writeFile(join(site.root, 'docs', 'index.html'), 'docs index');
  await mkdir(join(site.root, 'list'));
  await mkdir(join(site.root, 'list', 'sub dir'));
  await writeFile(join(site.root, 'list', 'b.txt'), 'b');
  await writeFile(join(site.root, 'list', 'a&<x>.txt'), 'a');
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await server?.close();
  server = undefined;
  await site.remove();
});

describe('GET and HEAD', () => {
  it('serves a file with its type, length and validators', async () => {
    await start();
    const res = await fetch(`${base}/small.html`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer())).toEqual(SMALL);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-length')).toBe(String(SMALL.length));
    expect(res.headers.get('etag')).toMatch(/^"[0-9a-z-]+"$/);
    expect(Date.parse(res.headers.get('last-modified') ?? '')).not.toBeNaN();
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect((await fetch(`${base}/style.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    const empty = await fetch(`${base}/empty.txt`);
    expect([empty.status, await empty.text(), empty.headers.get('content-length')]).toEqual([200, '', '0']);
  });

  it('costs a stat and one read for a small file, then one stat while it is cached', async () => {
    await start();
    await (await fetch(`${base}/data.bin`)).arrayBuffer();
    expect([files.stats, files.reads]).toEqual([1, 1]);
    const again = Buffer.from(await (await fetch(`${base}/data.bin`)).arrayBuffer());
    expect(again).toEqual(DATA);
    expect([files.stats, files.reads]).toEqual([2, 1]);
    expect(server?.stats().cacheHits).toBe(1);
    // A changed file (new size and mtime) is read again, never served stale.
    await writeFile(join(site.root, 'data.bin'), 'changed');
    await utimes(join(site.root, 'data.bin'), 1_800_000_000, 1_800_000_000);
    expect(await (await fetch(`${base}/data.bin`)).text()).toBe('changed');
    expect(files.reads).toBe(2);
  });

  it('does not cache when the cache is off, and still reads a small file in one call', async () => {
    await start({ cacheMaxFileBytes: 0 });
    await (await fetch(`${base}/data.bin`)).arrayBuffer();
    await (await fetch(`${base}/data.bin`)).arrayBuffer();
    expect([files.stats, files.reads]).toEqual([2, 2]);
  });

  it('answers HEAD with the GET headers and no body, without reading the file', async () => {
    await start();
    const c = raw();
    c.write(`HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /small.html HTTP/1.1\r\nHost: x\r\n\r\n`);
    // The HEAD answer carries Content-Length 1000 but no body: the next bytes are the GET's response.
    await c.untilClosedOrText(`${SMALL.toString()}`);
    const [headRes, rest] = c.text.split(/(?=HTTP\/1\.1 200)/g).slice(0, 2);
    expect(headRes).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(headRes).toMatch(/\r\ncontent-length: 1000\r\n/i);
    expect(headRes).toMatch(/\r\netag: "/i);
    expect(headRes?.endsWith('\r\n\r\n')).toBe(true);
    expect(rest).toContain('hello');
    expect(files.reads).toBe(1);
    const curlHead = await curl(['-I', `${base}/data.bin`]);
    expect(curlHead.stdout.toString()).toMatch(/content-length: 1000/i);
  });

  it('answers other methods with 405 and Allow', async () => {
    await start();
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await fetch(`${base}/small.html`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect(await res.text()).toBe('405 Method Not Allowed\n');
    }
    expect(files.calls).toBe(0);
  });

  it('answers a missing file with a short 404 that does not reveal the server path', async () => {
    await start();
    const res = await fetch(`${base}/nope.html`);
    expect(res.status).toBe(404);
    const body = await res.text();
    expect(body).toBe('404 Not Found\n');
    expect(res.headers.get('content-length')).toBe(String(body.length));
    expect(body).not.toContain(site.root);
    expect((await fetch(`${base}/small.html/`)).status).toBe(404);
  });

  it('answers 500 when WebFiles fails, without its message, and keeps serving', async () => {
    await start();
    files.failWith = new Error(`disk on fire at ${site.root}`);
    const res = await fetch(`${base}/small.html`);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('500 Internal Server Error\n');
    files.failWith = undefined;
    expect((await fetch(`${base}/small.html`)).status).toBe(200);
    expect(server?.stats()).toMatchObject({ serverErrors: 1, errors: 1 });
  });

  it('answers 504 when a WebFiles call outlives filesTimeoutMs', async () => {
    await start({ filesTimeoutMs: 100 });
    files.delayMs = 1000;
    const res = await fetch(`${base}/small.html`);
    expect([res.status, await res.text()]).toEqual([504, '504 Gateway Timeout\n']);
    files.delayMs = 0;
    expect((await fetch(`${base}/small.html`)).status).toBe(200);
  });
});

describe('connections', () => {
  it('keeps HTTP/1.1 connections alive and honours Connection: close', async () => {
    await start();
    const c = raw();
    c.write('GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n');
    const two = await c.untilResponses(2);
    expect(two.map((r) => [r.status, r.body.toString()])).toEqual([[200, 'p{}'], [200, 'p{}']]);
    expect(c.closed).toBe(false);
    c.write('GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await c.untilClosed();
    expect(parseResponses(c.received)).toHaveLength(3);
    // curl reuses one connection for two URLs.
    const r = await curl(['-o', '/dev/null', '-o', '/dev/null', '-w', '%{num_connects}\n', `${base}/style.css`, `${base}/small.html`]);
    expect(r.stdout.toString().trim().split('\n')).toEqual(['1', '0']);
  });

  it('closes HTTP/1.0 without keep-alive, keeps it with', async () => {
    await start();
    const plain = await rawExchange(port, 'GET /style.css HTTP/1.0\r\n\r\n');
    expect(plain.responses[0]?.status).toBe(200);
    const c = raw();
    c.write('GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const [res] = await c.untilResponses(1);
    expect(res?.headers.connection?.toLowerCase()).toBe('keep-alive');
    c.write('GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect(await c.untilResponses(2)).toHaveLength(2);
    expect(c.closed).toBe(false);
  });

  it('close() ends idle and busy connections and counts them', async () => {
    await start();
    const idle = raw();
    idle.write('GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n');
    await idle.untilResponses(1);
    expect(server?.stats().openConnections).toBe(1);
    await server?.close();
    await idle.untilClosed();
    expect(server?.stats()).toMatchObject({ requests: 1, openConnections: 0 });
  });
});

describe('ranges', () => {
  it('serves a-b, a- and -n as 206 with Content-Range (fetch and curl)', async () => {
    await start();
    for (const [range, start, end] of [['bytes=10-19', 10, 19], ['bytes=990-', 990, 999], ['bytes=-5', 995, 999], ['bytes=0-100000', 0, 999]] as const) {
      const res = await fetch(`${base}/data.bin`, { headers: { Range: range } });
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/1000`);
      expect(Buffer.from(await res.arrayBuffer())).toEqual(DATA.subarray(start, end + 1));
    }
    const c = await curl(['-r', '100-199', `${base}/data.bin`]);
    expect(c.stdout).toEqual(DATA.subarray(100, 200));
  });

  it('serves several ranges as multipart/byteranges', async () => {
    await start();
    const res = await fetch(`${base}/data.bin`, { headers: { Range: 'bytes=0-1, 500-509, -3' } });
    expect(res.status).toBe(206);
    const type = res.headers.get('content-type') ?? '';
    const boundary = /^multipart\/byteranges; boundary=(\w+)$/.exec(type)?.[1];
    expect(boundary).toBeDefined();
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get('content-length')).toBe(String(body.length));
    const parts = body.toString('latin1').split(`--${boundary}`).slice(1, -1);
    expect(parts).toHaveLength(3);
    const expected: [number, number][] = [[0, 1], [500, 509], [997, 999]];
    parts.forEach((part, i) => {
      const [s, e] = expected[i] ?? [0, 0];
      const [head, content] = part.split('\r\n\r\n');
      expect(head).toContain(`Content-Range: bytes ${s}-${e}/1000`);
      expect(head).toContain('Content-Type: application/octet-stream');
      expect(Buffer.from(content?.slice(0, -2) ?? '', 'latin1')).toEqual(DATA.subarray(s, e + 1));
    });
    expect(body.toString('latin1').endsWith(`--${boundary}--\r\n`)).toBe(true);
    // Above the cap of ranges: the whole file.
    const many = `bytes=${Array.from({ length: 17 }, (_, i) => `${i * 10}-${i * 10}`).join(',')}`;
    const whole = await fetch(`${base}/data.bin`, { headers: { Range: many } });
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(DATA);
  });

  it('answers an unsatisfiable range with 416 and ignores a malformed one', async () => {
    await start();
    const res = await fetch(`${base}/data.bin`, { headers: { Range: 'bytes=1000-' } });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe('bytes */1000');
    expect(await res.text()).toBe('416 Range Not Satisfiable\n');
    const bad = await fetch(`${base}/data.bin`, { headers: { Range: 'bytes=9-1' } });
    expect(bad.status).toBe(200);
    expect(Buffer.from(await bad.arrayBuffer())).toEqual(DATA);
  });

  it('applies a Range under If-Range only while the validator matches', async () => {
    await start();
    const etag = (await fetch(`${base}/data.bin`, { method: 'HEAD' })).headers.get('etag') ?? '';
    const ok = await fetch(`${base}/data.bin`, { headers: { Range: 'bytes=0-3', 'If-Range': etag } });
    expect(ok.status).toBe(206);
    await ok.arrayBuffer();
    const stale = await fetch(`${base}/data.bin`, { headers: { Range: 'bytes=0-3', 'If-Range': '"stale"' } });
    expect(stale.status).toBe(200);
    expect((await stale.arrayBuffer()).byteLength).toBe(1000);
  });
});

describe('conditional requests', () => {
  it('answers 304 for a matching If-None-Match or an unchanged If-Modified-Since', async () => {
    await start();
    const first = await fetch(`${base}/small.html`);
    await first.arrayBuffer();
    const etag = first.headers.get('etag') ?? '';
    const lastModified = first.headers.get('last-modified') ?? '';
    const inm = await fetch(`${base}/small.html`, { headers: { 'If-None-Match': etag } });
    expect(inm.status).toBe(304);
    expect(inm.headers.get('etag')).toBe(etag);
    expect(await inm.text()).toBe('');
    expect((await fetch(`${base}/small.html`, { headers: { 'If-Modified-Since': lastModified } })).status).toBe(304);
    const changed = await fetch(`${base}/small.html`, { headers: { 'If-None-Match': '"other"' } });
    expect(changed.status).toBe(200);
    await changed.arrayBuffer();
    const c = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, `${base}/small.html`]);
    expect(c.stdout.toString()).toBe('304');
  });

  it('answers 412 for a failing If-Match or If-Unmodified-Since', async () => {
    await start();
    expect((await fetch(`${base}/small.html`, { headers: { 'If-Match': '"other"' } })).status).toBe(412);
    expect((await fetch(`${base}/small.html`, { headers: { 'If-Unmodified-Since': 'Mon, 01 Jan 1990 00:00:00 GMT' } })).status).toBe(412);
    expect((await fetch(`${base}/small.html`, { headers: { 'If-Match': '*' } })).status).toBe(200);
  });
});

describe('directories', () => {
  it('redirects /dir to /dir/ keeping the query', async () => {
    await start();
    const res = await fetch(`${base}/docs?a=1&b`, { redirect: 'manual' });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('/docs/?a=1&b');
    const spaced = await fetch(`${base}/list/sub%20dir`, { redirect: 'manual' });
    expect(spaced.headers.get('location')).toBe('/list/sub%20dir/');
    // `//evil.test` names /evil.test: the Location is built from the site path, never `//evil.test/`.
    await mkdir(join(site.root, 'evil.test'));
    const r = await rawExchange(port, 'GET //evil.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.responses[0]?.headers.location).toBe('/evil.test/');
  });

  it('serves index.html of a directory', async () => {
    await start();
    const res = await fetch(`${base}/docs/`);
    expect([res.status, await res.text(), res.headers.get('content-type')]).toEqual([200, 'docs index', 'text/html; charset=utf-8']);
  });

  it('lists a directory without index.html: escaped, encoded, dirs first', async () => {
    await start();
    const res = await fetch(`${base}/list/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(html)));
    const links = [...html.matchAll(/href="([^"]+)"/g)].map((m) => m[1]);
    expect(links).toEqual(['../', './sub%20dir/', './a%26%3Cx%3E.txt', './b.txt']);
    expect(html).toContain('a&#38;&#60;x&#62;.txt');
    expect(html).not.toContain('<x>');
    expect(html).not.toContain(site.root);
    // Each link leads where it says.
    expect(await (await fetch(`${base}/list/a%26%3Cx%3E.txt`)).text()).toBe('a');
  });
});

describe('big files', () => {
  it('streams a big file in chunks with one read per chunk (fetch and curl)', async () => {
    const size = 3 * 1024 * 1024 + 123;
    const big = Buffer.alloc(size);
    for (let i = 0; i < size; i++) big[i] = (i * 7) & 0xff;
    await writeFile(join(site.root, 'big.bin'), big);
    await start({ chunkSize: 64 * 1024, cacheMaxFileBytes: 4096 });
    const res = await fetch(`${base}/big.bin`);
    expect(res.headers.get('content-length')).toBe(String(size));
    expect(Buffer.from(await res.arrayBuffer()).equals(big)).toBe(true);
    expect(files.reads).toBe(Math.ceil(size / (64 * 1024)));
    const c = await curl([`${base}/big.bin`]);
    expect(c.stdout.equals(big)).toBe(true);
    const ranged = await curl(['-r', '70000-200000', `${base}/big.bin`]);
    expect(ranged.stdout.equals(big.subarray(70000, 200001))).toBe(true);
    expect(server?.stats().bytes).toBe(2 * size + 130001);
  });
});
