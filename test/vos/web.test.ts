/**
 * The web VOS with real daemons (issue "VOS part 2"): RDISK on node 1 over an image made by
 * Debian's mkfs.minix -3, FS and NWEB in three shapes at once on one cluster (DC 1 unikernel on
 * node 0, DC 2 multiserver, DC 3 mixed with FS on node 2), a site written through the client
 * library's fs API from another node and fetched with Node's fetch and curl; the files read back
 * after FS restarts and the image passes fsck.minix -f; FS migrated during web load fails no
 * request; `dvs cp` and `dvs fs` move and show files.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDc } from '../../src/cli/admin.js';
import { freePort } from '../../src/cli/demo-web.js';
import { CP_CHUNK, fsCopy, fsFsck, fsMkfs } from '../../src/cli/fs-command.js';
import { migrateEndpoint } from '../../src/cli/migrate-command.js';
import { vosDown, vosStatus, vosUp } from '../../src/cli/vos-command.js';
import { connect, Vos, type DvsClient } from '../../src/client/index.js';
import { runCli } from '../cli/helpers.js';
import { startCluster, type TestCluster } from '../node/helpers.js';

const run = promisify(execFile);
const W = 60_000;
type Shape = 'unikernel' | 'multiserver' | 'mixed';
const SHAPES: { shape: Shape; dc: number }[] = [
  { shape: 'unikernel', dc: 1 },
  { shape: 'multiserver', dc: 2 },
  { shape: 'mixed', dc: 3 },
];

function specOf(shape: Shape, dc: number, port: number): object {
  const uni = (name: string, node: number, options?: object): object => ({ name, node, shape: 'unikernel', host: 'web', ...(options === undefined ? {} : { options }) });
  const own = (name: string, node: number, options?: object): object => ({ name, node, ...(options === undefined ? {} : { options }) });
  const nweb = { port };
  const rdisk = own('rdisk', 1, { image: `disk-${dc}.img` });
  if (shape === 'unikernel') return { dc, servers: [uni('ds', 0), uni('fs', 0), uni('nweb', 0, nweb), rdisk] };
  if (shape === 'multiserver') return { dc, servers: [own('ds', 0), own('fs', 0), own('nweb', 0, nweb), rdisk] };
  return { dc, servers: [uni('ds', 0), own('fs', 2), uni('nweb', 0, nweb), rdisk] };
}

let tc: TestCluster;
const ports = new Map<number, number>();
const specs = new Map<number, string>();
const clients: DvsClient[] = [];
const opened: Vos[] = [];

async function vosOn(node: number, dcid: number): Promise<Vos> {
  const r = tc.runtime(node);
  const c = await connect({ socketPath: r.socket, tokenPath: r.token, name: 'web-test' });
  clients.push(c);
  const v = await Vos.open(c, { dcid, name: `web-test-${node}` });
  opened.push(v);
  return v;
}

function imageOf(dc: number): string {
  return path.join(tc.cluster.nodes.find((n) => n.nodeId === 1)!.dataDir, `disk-${dc}.img`);
}

const SITE = new Map<string, Buffer>([
  ['/index.html', Buffer.from('<!doctype html><title>home</title><p>hello from FS</p>\n')],
  ['/css/site.css', Buffer.from('body { color: #123; }\n')],
  ['/docs/a.txt', Buffer.from('a\n')],
  ['/docs/b.txt', Buffer.from('b\n')],
  ['/big.bin', randomBytes(3 * 1024 * 1024 + 12345)],
]);

beforeAll(async () => {
  tc = await startCluster(3);
  for (const { shape, dc } of SHAPES) {
    await createDc(tc.dir, { dcid: dc, name: shape, nodes: [0, 1, 2] });
    await fsMkfs(imageOf(dc), 32);
    const port = await freePort();
    ports.set(dc, port);
    const file = path.join(tc.dir, `${shape}.json`);
    await writeFile(file, JSON.stringify(specOf(shape, dc, port)));
    specs.set(dc, file);
    await vosUp(tc.dir, file, { timeoutMs: W });
  }
}, 180_000);

afterAll(async () => {
  for (const v of opened) await v.close().catch(() => undefined);
  for (const c of clients) await c.close().catch(() => undefined);
  await tc?.stop();
}, 60_000);

describe.each(SHAPES)('the web VOS, $shape', ({ dc }) => {
  it('serves the files an application on another node wrote through the fs API, to fetch and curl', { timeout: W }, async () => {
    const fs = (await vosOn(2, dc)).fs;
    for (const [p, data] of SITE) {
      await fs.mkdir(path.posix.dirname(p), { recursive: true });
      await fs.writeFile(p, data);
    }
    expect((await fs.readdir('/')).sort()).toEqual(['big.bin', 'css', 'docs', 'index.html']);
    expect(Buffer.compare(await fs.readFile('/big.bin') as Buffer, SITE.get('/big.bin')!)).toBe(0);
    const base = `http://127.0.0.1:${ports.get(dc)}`;
    for (const [p, data] of SITE) {
      const res = await fetch(base + p);
      expect(res.status, p).toBe(200);
      expect(Buffer.compare(Buffer.from(await res.arrayBuffer()), data), p).toBe(0);
    }
    const home = await fetch(`${base}/`);
    expect(await home.text()).toContain('hello from FS');
    expect(home.headers.get('content-type')).toMatch(/^text\/html/);
    const etag = home.headers.get('etag');
    expect(etag).toBeTruthy();
    expect((await fetch(`${base}/`, { headers: { 'if-none-match': etag! } })).status).toBe(304);
    const range = await fetch(`${base}/big.bin`, { headers: { range: 'bytes=1000-1999' } });
    expect(range.status).toBe(206);
    expect(Buffer.compare(Buffer.from(await range.arrayBuffer()), SITE.get('/big.bin')!.subarray(1000, 2000))).toBe(0);
    const listing = await (await fetch(`${base}/docs/`)).text();
    expect(listing).toContain('a.txt');
    expect(listing).toContain('b.txt');
    expect((await fetch(`${base}/missing.html`)).status).toBe(404);
    expect((await fetch(`${base}/index.html`, { method: 'POST', body: 'x' })).status).toBe(405);
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${base}/big.bin`]);
    expect(stdout).toBe(`200 ${SITE.get('/big.bin')!.length}`);
    const traversal = await run('curl', ['-s', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${base}/docs/%2e%2e/%2e%2e/etc/passwd`]);
    expect(['400', '404']).toContain(traversal.stdout);
  });
});

describe('FS state', () => {
  it('a file written through FS reads back the same after FS restarts, and the image passes fsck.minix -f', { timeout: 120_000 }, async () => {
    const dc = 1;
    const data = randomBytes(1024 * 1024 + 7);
    const fs = (await vosOn(1, dc)).fs;
    await fs.mkdir('/keep', { recursive: true });
    await fs.writeFile('/keep/data.bin', data);
    await fs.appendFile('/keep/log.txt', 'one\n');
    await fs.appendFile('/keep/log.txt', 'two\n');
    await fs.rename('/keep/log.txt', '/keep/log-renamed.txt');
    await vosDown(tc.dir, dc, { timeoutMs: W });
    // Stopped, the image is the whole state: fsck finds it clean.
    const check = await fsFsck(imageOf(dc));
    expect(check.clean, check.report).toBe(true);
    await vosUp(tc.dir, specs.get(dc)!, { timeoutMs: W });
    const again = (await vosOn(2, dc)).fs;
    expect(Buffer.compare((await again.readFile('/keep/data.bin')) as Buffer, data)).toBe(0);
    expect(await again.readFile('/keep/log-renamed.txt', 'utf8')).toBe('one\ntwo\n');
    await expect(again.stat('/keep/log.txt')).rejects.toMatchObject({ code: 'EDVSNOENT' });
  });

  it('FS migrated to another node during web load fails no request', { timeout: 120_000 }, async () => {
    const dc = 2;
    const base = `http://127.0.0.1:${ports.get(dc)}`;
    const expected = SITE.get('/index.html')!.toString();
    const fsServer = (await vosStatus(tc.dir, dc)).servers.find((s) => s.key === 'fs')!;
    expect(fsServer.endpoint).toBeDefined();
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    const load = Promise.all(
      [0, 1, 2, 3].map(async () => {
        const until = Date.now() + 60_000;
        while (!stop && Date.now() < until) {
          try {
            const res = await fetch(`${base}/index.html`);
            const body = await res.text();
            if (res.status !== 200 || body !== expected) failures.push(`${res.status} ${body.slice(0, 60)}`);
            else ok++;
          } catch (err) {
            failures.push(String(err));
          }
        }
      }),
    );
    try {
      // Under load FS may be busy at the moment of a move; a refused move changes nothing, so ask again.
      let moved = false;
      for (let attempt = 0; attempt < 20 && !moved; attempt++) {
        moved = await migrateEndpoint(tc.dir, dc, fsServer.endpoint!, 1, { timeoutMs: 20_000 }).then(
          () => true,
          () => false,
        );
      }
      expect(moved).toBe(true);
      const before = ok;
      const deadline = Date.now() + 10_000;
      while (ok < before + 50 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    } finally {
      stop = true;
      await load;
    }
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    expect((await vosStatus(tc.dir, dc)).servers.find((s) => s.key === 'fs')?.at).toBe(1);
  });
});

describe('dvs cp and dvs fs', () => {
  it('copies a file into the DC and out again, identical, and lists, cats and stats it', { timeout: W }, async () => {
    const local = path.join(tc.dir, 'upload.bin');
    const back = path.join(tc.dir, 'download.bin');
    const data = randomBytes(5 * 1024 * 1024 + 3);
    await writeFile(local, data);
    const up = await runCli(['cp', local, 'dc:/upload.bin', '--dc', '3', '--node', '2', '--dir', tc.dir]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/^1 file\(s\), 5242883 bytes/);
    const down = await runCli(['cp', 'dc:/upload.bin', back, '--dc', '3', '--node', '0', '--dir', tc.dir]);
    expect(down.code, down.stderr).toBe(0);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(await readFile(back))).toBe(sha(data));
    const ls = await runCli(['fs', 'ls', '/', '--dc', '3', '--dir', tc.dir]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/5242883 .* upload\.bin/);
    const stat = await runCli(['fs', 'stat', '/upload.bin', '--json', '--dc', '3', '--dir', tc.dir]);
    expect(JSON.parse(stat.stdout)).toMatchObject({ kind: 'file', size: 5242883 });
    const cat = await runCli(['fs', 'cat', '/index.html', '--dc', '3', '--dir', tc.dir]);
    expect(cat.stdout).toBe(SITE.get('/index.html')!.toString());
    const missing = await runCli(['fs', 'cat', '/nope', '--dc', '3', '--dir', tc.dir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/EDVSNOENT/);
  });

  it('copies files of every size around its 4 MiB chunks (two in flight) and a tree, identical both ways', { timeout: W }, async () => {
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const target = { dir: tc.dir, dcid: 3, node: 2 };
    const tree = path.join(tc.dir, 'tree');
    await mkdir(path.join(tree, 'sub'), { recursive: true });
    // The image holds 32 MiB, 5 MiB of it the upload above.
    const sizes = [0, 1, CP_CHUNK, CP_CHUNK + 1, 2 * CP_CHUNK + 7];
    const files = new Map<string, Buffer>();
    for (const [i, size] of sizes.entries()) {
      const name = i % 2 === 0 ? `f${i}.bin` : path.join('sub', `f${i}.bin`);
      const data = randomBytes(size);
      files.set(name, data);
      await writeFile(path.join(tree, name), data);
    }
    const up = await fsCopy(target, tree, 'dc:/tree', { recursive: true });
    expect(up).toMatchObject({ files: sizes.length, bytes: sizes.reduce((a, n) => a + n, 0) });
    const back = path.join(tc.dir, 'tree-back');
    const down = await fsCopy(target, 'dc:/tree', back, { recursive: true });
    expect(down).toMatchObject({ files: sizes.length, bytes: up.bytes });
    for (const [name, data] of files) expect(sha(await readFile(path.join(back, name))), name).toBe(sha(data));
  });
});
