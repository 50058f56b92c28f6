/**
 * README's first command, `dvs demo`: the web VOS on a local 3-node cluster, run as a user does
 * (the real CLI in a child process), its page fetched with fetch and curl, then Ctrl-C (SIGINT)
 * stops everything it started. Each shape once: unikernel, multiserver, mixed.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CLI_MAIN } from './helpers.js';

const run = promisify(execFile);

describe.each(['unikernel', 'multiserver', 'mixed'])('dvs demo --shape %s', (shape) => {
  it('serves the sample site from the DC\'s FS until Ctrl-C, then stops every daemon', { timeout: 120_000 }, async () => {
    const child = spawn(process.execPath, [CLI_MAIN, 'demo', '--shape', shape, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const check = (): void => {
          const m = /the web VOS serves (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
          if (m?.[1] !== undefined) resolve(m[1]);
        };
        child.stdout.on('data', check);
        void exited.then(() => reject(new Error(`the demo exited before serving:\n${out}\n${err}`)));
      });
      const home = await fetch(url);
      expect(home.status).toBe(200);
      expect(await home.text()).toContain('DVS web demo');
      const script = await fetch(`${url}app.js`);
      expect(script.headers.get('content-type')).toMatch(/javascript/);
      const { stdout } = await run('curl', ['-s', '-r', '0-99', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${url}data/sample.bin`]);
      expect(stdout).toBe('206 100');
      const listing = await (await fetch(`${url}docs/`)).text();
      expect(listing).toContain('readme.txt');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out).toContain('cluster down (3 daemons stopped)');
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      clearTimeout(killer);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
