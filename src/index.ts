/** The public surface of DVS for host processes: the contract, the kernel and the runtime pieces. */
export * from './ipc/index.js';
export * from './kernel/index.js';
export * from './runtime/index.js';
