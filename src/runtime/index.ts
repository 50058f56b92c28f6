/** Layer 3 runtime pieces: the real clock and the in-process loopback network. */
export { systemClock } from './system-clock.js';
export { LoopbackNetwork } from './loopback.js';
export { silentLogger, type Logger } from './logger.js';
