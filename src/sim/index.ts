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
export {
  Simulation,
  type SimulationOptions,
  type RunOptions,
  type StopReason,
  type ProcessFailure,
  type SimResult,
  type SimContext,
  type SimTask,
} from './simulation.js';
