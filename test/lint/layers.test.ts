/** The linter enforces DESIGN.md's layering: an upward or sideways import between src/ folders is an error. */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: new URL('../..', import.meta.url).pathname });

async function layerErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: file });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layering rule', () => {
  it('refuses an upward import (kernel -> node) and a sideways one (node <-> client)', async () => {
    expect(await layerErrors('src/kernel/process.ts', "import type { Daemon } from '../node/daemon.js';\nexport type X = Daemon;\n")).toEqual([expect.stringContaining('layer kernel may not import node')]);
    expect(await layerErrors('src/node/daemon.ts', "import type { DvsClient } from '../client/index.js';\nexport type X = DvsClient;\n")).toEqual([expect.stringContaining('layer node may not import client')]);
    expect(await layerErrors('src/client/client.ts', "import type { Daemon } from '../node/daemon.js';\nexport type X = Daemon;\n")).toEqual([expect.stringContaining('layer client may not import node')]);
  }, 60_000);

  it('allows a downward import (cluster -> kernel, cli -> node)', async () => {
    expect(await layerErrors('src/cluster/reconciler.ts', "import type { Kernel } from '../kernel/kernel.js';\nexport type X = Kernel;\n")).toEqual([]);
    expect(await layerErrors('src/cli/main.ts', "import type { Daemon } from '../node/daemon.js';\nexport type X = Daemon;\n")).toEqual([]);
  }, 60_000);
});
