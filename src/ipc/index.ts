/** Layer 1, the contract: types, endpoint arithmetic, limits, errors. No I/O. */
export * from './errors.js';
export * from './reserved.js';
export * from './endpoint.js';
export * from './limits.js';
export * from './payload.js';
export * from './message.js';
export * from './privileges.js';
export type * from './calls.js';
export { AbortSwitch } from './calls.js';
