/** The deterministic simulator: a whole cluster of kernels on virtual time and a seeded network. */
export { Prng } from './prng.js';
export { SimClock, type SimClockOptions, type FiredTimer } from './sim-clock.js';
export {
  SimNetwork,
  describeFrame,
  DEFAULT_LATENCY,
  DEFAULT_DETECTION_DELAY,
  type NetworkPeer,
  type LatencyRange,
  type SimNetworkOptions,
  type NetworkStats,
} from './sim-network.js';
export { SimWorld, type WorldOptions } from './sim-world.js';
export {
  Simulation,
  type SimulationOptions,
} from './simulation.js';
export {
  type RunOptions,
  type StopReason,
  type ProcessFailure,
  type SimResult,
  type SimContext,
  type SimTask,
} from './sim-world.js';
export { SimCluster, type SimClusterOptions, type SimNode } from './sim-cluster.js';
export { SimStoreLink } from './sim-store-link.js';
