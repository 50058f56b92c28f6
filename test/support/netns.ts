/**
 * Test hosts in network namespaces: N namespaces, each with its own address on a private bridge
 * made for the test (10.213.<net>.<i+1>/24, the bridge itself .254), created and removed by the test.
 * Needs root (CAP_NET_ADMIN) and iproute2; fails loudly otherwise.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';

export interface TestHost {
  readonly index: number;
  readonly namespace: string;
  readonly address: string;
  /** Command prefix that runs a program inside this host's namespace. */
  readonly prefix: readonly string[];
  /** Cuts this host off the bridge (its veth down): a network partition of one host. */
  cut(): void;
  /** Puts it back. */
  heal(): void;
}

export interface TestNetwork {
  readonly hosts: readonly TestHost[];
  /** The bridge's address, reachable from the root namespace and from every host. */
  readonly gateway: string;
  remove(): void;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

export function createTestNetwork(count: number): TestNetwork {
  const net = randomInt(1, 250);
  const tag = `${process.pid % 1000}x${net}`;
  const bridge = `dvsbr${tag}`.slice(0, 15);
  const hosts: TestHost[] = [];
  const remove = (): void => {
    for (const h of hosts) {
      try {
        ip('netns', 'del', h.namespace);
      } catch {
        // already gone
      }
    }
    try {
      ip('link', 'del', bridge);
    } catch {
      // already gone
    }
  };
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `10.213.${net}.254/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (let i = 0; i < count; i++) {
      const namespace = `dvsns${tag}n${i}`;
      const outer = `dvsv${tag}n${i}`.slice(0, 15);
      const inner = `dvsp${tag}n${i}`.slice(0, 15);
      const address = `10.213.${net}.${i + 1}`;
      ip('netns', 'add', namespace);
      hosts.push({ index: i, namespace, address, prefix: ['ip', 'netns', 'exec', namespace], cut: () => void ip('link', 'set', outer, 'down'), heal: () => void ip('link', 'set', outer, 'up') });
      ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', namespace);
      ip('link', 'set', outer, 'master', bridge);
      ip('link', 'set', outer, 'up');
      ip('netns', 'exec', namespace, 'ip', 'addr', 'add', `${address}/24`, 'dev', inner);
      ip('netns', 'exec', namespace, 'ip', 'link', 'set', inner, 'up');
      ip('netns', 'exec', namespace, 'ip', 'link', 'set', 'lo', 'up');
    }
  } catch (err) {
    remove();
    throw new Error(`cannot create test network namespaces (root and iproute2 needed): ${(err as Error).message}`);
  }
  return { hosts, gateway: `10.213.${net}.254`, remove };
}
