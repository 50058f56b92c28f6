/** `Election` on the in-memory store (the same checks run on etcd in etcd-election.test.ts). */
import { afterAll } from 'vitest';
import { MemoryStore } from '../../src/cluster/memory-store.js';
import { electionSuite } from './election-suite.js';

const stores: MemoryStore[] = [];
let roots = 0;

afterAll(async () => {
  for (const s of stores) await s.close();
});

electionSuite('MemoryStore', () => {
  const store = new MemoryStore();
  stores.push(store);
  return { client: () => store, root: () => `/e${++roots}` };
});
