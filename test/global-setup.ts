/**
 * Builds dist/ once before the suite, so tests can start real OS processes (daemons, clients)
 * from compiled JavaScript. Type errors are reported by the type-check step of `npm test`; here
 * tsc still emits, so a test run is not blocked by them.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(`global-setup: tsc reported problems:\n${r.stdout}${r.stderr}`);
}
