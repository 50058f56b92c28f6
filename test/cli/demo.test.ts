/**
 * README's demo command, both forms: the cluster demo (three real daemons, clients through the
 * process socket, a grant copied across nodes) and the in-process one. Small counts keep it quick.
 */
import { describe, expect, it } from 'vitest';
import { runClusterDemo } from '../../src/cli/demo-cluster.js';
import { runDemo } from '../../src/cli/demo.js';

describe('dvs demo', () => {
  it('boots a cluster, serves requests across nodes, copies a grant intact and stops every daemon', async () => {
    const lines: string[] = [];
    await runClusterDemo({ requests: 50, bulkBytes: 256 * 1024, log: (l) => lines.push(l) });
    const text = lines.join('\n');
    expect(text).toMatch(/clients on nodes 0 and 2: 100 sendrecs to node 1 .*client-b reads client-a's last key: 49/);
    expect(text).toMatch(/granted 262144 bytes; .* SHA-256 matches/);
    expect(text).toContain('cluster down (3 daemons stopped)');
  }, 60_000);

  it('runs in one process as well', async () => {
    const lines: string[] = [];
    await runDemo({ requests: 50, bulkBytes: 64 * 1024, log: (l) => lines.push(l) });
    const text = lines.join('\n');
    expect(text).toMatch(/client: 50 PUT sendrecs across nodes .* GET k49 = 2401/);
    expect(text).toMatch(/client: granted 65536 bytes; ds copied 65536 bytes/);
    expect(text).toContain('demo finished: kernels shut down cleanly');
  }, 30_000);
});
