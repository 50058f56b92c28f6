/** Migration wired into a simulated cluster as a daemon wires it: per node a coroutine host and an agent. */
import { DvsError } from '../../src/ipc/errors.js';
import { CoroutineHost } from '../../src/services/coroutine-host.js';
import { MigrationAgent } from '../../src/services/migration-agent.js';
import type { ServiceFactory } from '../../src/services/service.js';
import type { SimCluster } from '../../src/sim/index.js';

/** Every node's host (its one factory named `counter`) and agent, the agent taking the kernel's `svc` frames. */
export function wireMigration(c: SimCluster, counter: ServiceFactory): { agents: MigrationAgent[]; hosts: CoroutineHost[] } {
  const agents: MigrationAgent[] = [];
  const hosts: CoroutineHost[] = [];
  for (const n of c.nodes) {
    const kernel = c.kernel(n);
    const host = new CoroutineHost({
      nodeId: n,
      kernel,
      factory: (name) => {
        if (name !== 'counter') throw new DvsError('EDVSNOENT', `no factory ${name}`);
        return counter;
      },
      bind: (dcid, o) => c.bind(n, dcid, o),
    });
    const agent = new MigrationAgent({ nodeId: n, kernel, directory: c.node(n).directory, hosting: host, clock: c.clock });
    kernel.onServiceFrame = (from, dcid, body, data) => agent.handle(from, dcid, body, data);
    agents.push(agent);
    hosts.push(host);
  }
  return { agents, hosts };
}
