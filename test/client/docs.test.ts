/** The protocol documents say what the code does: the error catalogue, the limits hello announces, error details. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ERRNO } from '../../src/ipc/errors.js';
import { startHarness, type Harness } from './helpers.js';

const IPC_MD = readFileSync(fileURLToPath(new URL('../../docs/ipc.md', import.meta.url)), 'utf8');
const PROTOCOL_MD = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The catalogue rows of docs/ipc.md: code -> number (written with a minus sign, U+2212, or a hyphen). */
function catalogue(): Map<string, number> {
  const rows = new Map<string, number>();
  for (const m of IPC_MD.matchAll(/^\| `(EDVS\w+)` \| [−-](\d+) \| (.+) \|$/gm)) rows.set(m[1]!, -Number(m[2]));
  return rows;
}

describe('protocol documents against the code', () => {
  it('docs/ipc.md lists every error code of src/ipc/errors.ts with its number and a meaning, and no other', () => {
    const rows = catalogue();
    for (const [code, errno] of Object.entries(ERRNO)) expect(rows.get(code), code).toBe(errno);
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERRNO).sort());
  });

  it('hello announces the kernel limits docs/protocol.md gives: 64 KiB payloads, 1 MiB copy chunks', async () => {
    h = await startHarness();
    const c = await h.connect();
    expect(c.info.maxPayloadBytes).toBe(64 * 1024);
    expect(c.info.maxCopyChunk).toBe(1024 * 1024);
    expect(c.info.maxFrameBytes).toBe(4 * 1024 * 1024);
    expect(c.info.maxCopyBytes).toBe(4 * 1024 * 1024 - 4096);
    expect(PROTOCOL_MD).toMatch(/^\| `maxPayloadBytes` \| 64 KiB /m);
    expect(PROTOCOL_MD).toMatch(/^\| `maxCopyChunk` \| 1 MiB /m);
    expect(PROTOCOL_MD).toMatch(/^\| `maxFrameBytes` \| 4 MiB/m);
  });

  it('an unknown op is EDVSBADREQUEST with details.field = "op", and the connection stays', async () => {
    h = await startHarness();
    const r = await h.rawHello();
    for (const [id, op] of [[1, 'nope'], [2, 42], [3, undefined], [4, '__proto__']] as const) {
      r.send({ id, op });
      expect(await r.response(id), String(op)).toMatchObject({ ok: false, error: { code: 'EDVSBADREQUEST', errno: -107, details: { field: 'op' } } });
    }
    r.send({ id: 5, op: 'ping' });
    expect(await r.response(5)).toMatchObject({ ok: true });
  });
});
