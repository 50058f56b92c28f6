/**
 * Layer 4, coordination: the `CoordinationStore` interface and its backends (in-memory, the
 * embedded TCP server and its client, etcd), lease keeping, elections, and the cluster `Directory`
 * (nodes, DCs, endpoints) built on any of them. See docs/coordination.md.
 */
export * from './store.js';
export { MemoryStore, type MemoryStoreOptions, type WatchHandle, type BatchCallback } from './memory-store.js';
export { DEFAULT_STORE_LIMITS, type StoreLimits } from './store-checks.js';
export { StoreServer, type StoreServerOptions, type StoreServerStats } from './store-server.js';
export { StoreClient, type StoreClientOptions, type StoreClientEvents } from './store-client.js';
export { STORE_PROTOCOL, STORE_PROTOCOL_VERSION } from './store-protocol.js';
export { LeaseKeeper, type LeaseKeeperOptions } from './lease-keeper.js';
export { DirectoryKeys, type ParsedKey } from './keys.js';
export {
  Directory,
  NAME_MAX,
  type NodeInfo,
  type NodeRecord,
  type DcDefinition,
  type DcRecord,
  type EndpointRecord,
  type NodeEvent,
  type DcEvent,
  type EndpointEvent,
  type DirectoryEvents,
  type DirectoryOptions,
  type RegisterOptions,
  type ClaimOptions,
  type ThawOptions,
  type ReleaseOptions,
} from './directory.js';
export { Emitter, type Listener } from './emitter.js';
export { EtcdStore, type EtcdStoreOptions, type EtcdAuth, type EtcdTls } from './etcd-store.js';
export { Election, Leadership, type ElectionOptions, type CampaignOptions, type LeaderInfo, type LeadershipEvents } from './election.js';
