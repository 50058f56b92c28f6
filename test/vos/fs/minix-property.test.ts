/**
 * Model-based test: a random workload (create, append, overwrite, truncate, rename, unlink, link,
 * mkdir, rmdir) on MinixFs and on an in-memory tree, compared after every step (the tree, every
 * file's bytes, link counts, the error code when the model says the step must fail); then sync,
 * unmount, fsck.minix -f clean, and a fresh mount compared once more. Some runs use a cache so
 * small that dirty blocks are evicted by write-back all the time.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { isDvsError } from '../../../src/ipc/errors.js';
import { MinixFs } from '../../../src/vos/fs/minix/minix-fs.js';
import { bytes, fsck, makeImage, memoryOf, ProbeDevice, save, TempDirs } from './minix-helpers.js';

const RUNS = Number(process.env.DVS_PROPERTY_RUNS ?? 20);
const MAX_STEPS = 60;
const NAMES = ['a', 'b', 'c', 'd'];
const MAX_FILE = 400_000;

interface FileNode {
  readonly kind: 'file';
  data: Uint8Array;
  ino: number;
}
interface DirNode {
  readonly kind: 'dir';
  readonly children: Map<string, Node>;
}
type Node = FileNode | DirNode;

type Op =
  | { op: 'create' | 'mkdir'; dir: number; name: number }
  | { op: 'append'; file: number; len: number; seed: number }
  | { op: 'write'; file: number; at: number; len: number; seed: number }
  | { op: 'truncate'; file: number; percent: number; grow: number }
  | { op: 'unlink'; file: number }
  | { op: 'rmdir'; dir: number }
  | { op: 'link'; file: number; dir: number; name: number }
  | { op: 'rename'; any: number; dir: number; name: number };

const pick = fc.nat({ max: 1000 });
const len = fc.oneof(fc.nat({ max: 3000 }), fc.nat({ max: 80_000 }), fc.constant(0));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), dir: pick, name: fc.nat({ max: NAMES.length - 1 }) }),
  fc.record({ op: fc.constant('write' as const), file: pick, at: fc.nat({ max: 300_000 }), len, seed: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), file: pick, percent: fc.nat({ max: 100 }), grow: fc.nat({ max: 3000 }) }),
  fc.record({ op: fc.constant('create' as const), dir: pick, name: fc.nat({ max: NAMES.length - 1 }) }),
  fc.record({ op: fc.constant('mkdir' as const), dir: pick, name: fc.nat({ max: NAMES.length - 1 }) }),
  fc.record({ op: fc.constant('append' as const), file: pick, len, seed: fc.nat() }),
  fc.record({ op: fc.constant('write' as const), file: pick, at: fc.nat({ max: 300_000 }), len, seed: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), file: pick, percent: fc.nat({ max: 100 }), grow: fc.oneof(fc.constant(0), fc.nat({ max: 3000 }), fc.nat({ max: 300_000 })) }),
  fc.record({ op: fc.constant('unlink' as const), file: pick }),
  fc.record({ op: fc.constant('rmdir' as const), dir: pick }),
  fc.record({ op: fc.constant('link' as const), file: pick, dir: pick, name: fc.nat({ max: NAMES.length - 1 }) }),
  fc.record({ op: fc.constant('rename' as const), any: pick, dir: pick, name: fc.nat({ max: NAMES.length - 1 }) }),
);

/** Every path in the model, dirs and files, parents first ("/" included). */
function paths(root: DirNode): { path: string; node: Node }[] {
  const out: { path: string; node: Node }[] = [{ path: '/', node: root }];
  const walk = (dir: DirNode, prefix: string): void => {
    for (const [name, node] of [...dir.children].sort()) {
      const path = `${prefix}/${name}`;
      out.push({ path, node });
      if (node.kind === 'dir') walk(node, path);
    }
  };
  walk(root, '');
  return out;
}

function lookup(root: DirNode, path: string): Node | undefined {
  let node: Node = root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    if (node.kind !== 'dir') return undefined;
    const next: Node | undefined = node.children.get(part);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}

function parentOf(path: string): { parent: string; name: string } {
  const i = path.lastIndexOf('/');
  return { parent: i === 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

function linkCount(root: DirNode, file: FileNode): number {
  return paths(root).filter((p) => p.node === file).length;
}

async function compare(fs: MinixFs, root: DirNode, step: string): Promise<void> {
  for (const { path, node } of paths(root)) {
    const st = await fs.stat(path);
    expect(st.kind, `${step}: kind of ${path}`).toBe(node.kind);
    if (node.kind === 'dir') {
      const subdirs = [...node.children.values()].filter((c) => c.kind === 'dir').length;
      expect(st.nlink, `${step}: nlink of ${path}`).toBe(2 + subdirs);
      const listed = await fs.readdir(path);
      expect(
        listed.entries.map((e) => `${e.name}:${e.kind}`),
        `${step}: entries of ${path}`,
      ).toEqual([...node.children].sort().map(([name, c]) => `${name}:${c.kind}`));
    } else {
      expect(st.ino, `${step}: ino of ${path}`).toBe(node.ino);
      expect(st.size, `${step}: size of ${path}`).toBe(node.data.length);
      expect(st.nlink, `${step}: nlink of ${path}`).toBe(linkCount(root, node));
      const got = await fs.read(st.ino, 0, node.data.length + 10);
      expect(Buffer.from(got).equals(Buffer.from(node.data)), `${step}: contents of ${path}`).toBe(true);
    }
  }
}

/** Applies `op` to the model; returns the error code the FS must give, or undefined for success. */
async function apply(fs: MinixFs, root: DirNode, op: Op): Promise<string> {
  const all = paths(root);
  const dirs = all.filter((p) => p.node.kind === 'dir');
  const files = all.filter((p) => p.node.kind === 'file');
  const dirAt = (i: number) => dirs[i % dirs.length] ?? { path: '/', node: root };
  const fileAt = (i: number) => files[i % Math.max(1, files.length)];
  const expectCode = async (p: Promise<unknown>, code: string | undefined, what: string): Promise<void> => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (code === undefined) expect(err, what).toBeUndefined();
    else expect(isDvsError(err) ? err.code : String(err), what).toBe(code);
  };
  switch (op.op) {
    case 'create': {
      const path = join(dirAt(op.dir).path, NAMES[op.name] ?? 'x');
      const exists = lookup(root, path);
      if (exists === undefined) {
        const st = await fs.open(path, { create: true, exclusive: true });
        (dirAt(op.dir).node as DirNode).children.set(NAMES[op.name] ?? 'x', { kind: 'file', data: new Uint8Array(0), ino: st.ino });
      } else await expectCode(fs.open(path, { create: true, exclusive: true }), 'EDVSEXIST', `create ${path}`);
      return `create ${path}`;
    }
    case 'mkdir': {
      const path = join(dirAt(op.dir).path, NAMES[op.name] ?? 'x');
      const exists = lookup(root, path) !== undefined;
      await expectCode(fs.mkdir(path), exists ? 'EDVSEXIST' : undefined, `mkdir ${path}`);
      if (!exists) (dirAt(op.dir).node as DirNode).children.set(NAMES[op.name] ?? 'x', { kind: 'dir', children: new Map() });
      return `mkdir ${path}`;
    }
    case 'append':
    case 'write': {
      const f = fileAt(op.file);
      if (f === undefined || f.node.kind !== 'file') return 'skip';
      const node = f.node;
      // Offsets near the end (inside the last block, just past it, a hole away) matter most.
      const at = op.op === 'append' ? node.data.length : op.at % 3 === 0 ? op.at % (node.data.length + 1) : Math.min(op.at, node.data.length + 20_000);
      const n = Math.max(0, Math.min(op.len, MAX_FILE - at));
      const data = bytes(n, op.seed);
      if (op.op === 'append') await fs.append(node.ino, data);
      else await fs.write(node.ino, at, data);
      if (n > 0) {
        const next = new Uint8Array(Math.max(node.data.length, at + n));
        next.set(node.data);
        next.set(data, at);
        node.data = next;
      }
      return `${op.op} ${f.path} @${at} +${n}`;
    }
    case 'truncate': {
      const f = fileAt(op.file);
      if (f === undefined || f.node.kind !== 'file') return 'skip';
      const node = f.node;
      const size = Math.min(MAX_FILE, Math.floor((node.data.length * op.percent) / 100) + op.grow);
      await fs.truncate(node.ino, size);
      const next = new Uint8Array(size);
      next.set(node.data.subarray(0, size));
      node.data = next;
      return `truncate ${f.path} ${size}`;
    }
    case 'unlink': {
      const f = fileAt(op.file);
      if (f === undefined) return 'skip';
      await fs.unlink(f.path);
      const { parent, name } = parentOf(f.path);
      (lookup(root, parent) as DirNode).children.delete(name);
      return `unlink ${f.path}`;
    }
    case 'rmdir': {
      const d = dirAt(op.dir);
      const code = d.path === '/' ? 'EDVSINVAL' : (d.node as DirNode).children.size > 0 ? 'EDVSNOTEMPTY' : undefined;
      await expectCode(fs.rmdir(d.path), code, `rmdir ${d.path}`);
      if (code === undefined) {
        const { parent, name } = parentOf(d.path);
        (lookup(root, parent) as DirNode).children.delete(name);
      }
      return `rmdir ${d.path}`;
    }
    case 'link': {
      const f = fileAt(op.file);
      if (f === undefined) return 'skip';
      const to = join(dirAt(op.dir).path, NAMES[op.name] ?? 'x');
      const exists = lookup(root, to) !== undefined;
      await expectCode(fs.link(f.path, to), exists ? 'EDVSEXIST' : undefined, `link ${f.path} ${to}`);
      if (!exists) (dirAt(op.dir).node as DirNode).children.set(NAMES[op.name] ?? 'x', f.node);
      return `link ${f.path} ${to}`;
    }
    case 'rename': {
      const src = all[op.any % all.length] ?? { path: '/', node: root };
      const to = join(dirAt(op.dir).path, NAMES[op.name] ?? 'x');
      const target = lookup(root, to);
      let code: string | undefined;
      if (src.path === '/') code = 'EDVSINVAL';
      else if (src.path === to || target === src.node) code = undefined;
      else if (src.node.kind === 'dir' && to.startsWith(`${src.path}/`)) code = 'EDVSINVAL';
      else if (target !== undefined && src.node.kind === 'dir' && target.kind !== 'dir') code = 'EDVSNOTDIR';
      else if (target !== undefined && src.node.kind !== 'dir' && target.kind === 'dir') code = 'EDVSISDIR';
      else if (target?.kind === 'dir' && target.children.size > 0) code = 'EDVSNOTEMPTY';
      await expectCode(fs.rename(src.path, to), code, `rename ${src.path} ${to}`);
      if (code === undefined && src.path !== to && target !== src.node) {
        const from = parentOf(src.path);
        (lookup(root, from.parent) as DirNode).children.delete(from.name);
        const dst = parentOf(to);
        (lookup(root, dst.parent) as DirNode).children.set(dst.name, src.node);
      }
      return `rename ${src.path} ${to}`;
    }
  }
}

const temps = new TempDirs();
afterEach(() => temps.cleanup());

describe('MinixFs against a model', () => {
  it(
    'random workloads match the model, fsck.minix -f is clean, a fresh mount matches again',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: MAX_STEPS, size: 'max' }), fc.boolean(), async (ops, smallCache) => {
          const image = makeImage(temps.make(), 8192, 256);
          const mem = memoryOf(image.path);
          const dev = new ProbeDevice(mem);
          const fs = await MinixFs.mount(dev, smallCache ? { cacheBytes: 16 * 1024 } : {});
          const root: DirNode = { kind: 'dir', children: new Map() };
          const done: string[] = [];
          try {
            // A few files and a directory first, so most random steps have something to act on.
            const opening: Op[] = [
              { op: 'create', dir: 0, name: 0 },
              { op: 'create', dir: 0, name: 1 },
              { op: 'mkdir', dir: 0, name: 2 },
            ];
            for (const op of [...opening, ...ops]) {
              done.push(await apply(fs, root, op));
              await compare(fs, root, done.join(' | '));
            }
            await fs.sync();
            await fs.unmount();
            expect(dev.outOfBounds).toEqual([]);
            save(mem, image.path);
            const r = fsck(image.path);
            expect(r.code, `${done.join(' | ')}\n${r.output}`).toBe(0);
            const again = await MinixFs.mount(memoryOf(image.path));
            await compare(again, root, `after remount: ${done.join(' | ')}`);
            await again.unmount();
          } finally {
            temps.cleanup();
          }
        }),
        { numRuns: RUNS },
      );
    },
    240_000,
  );
});
