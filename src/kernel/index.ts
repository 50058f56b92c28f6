/** Layer 2, the kernel: the rendezvous state machine of locally owned endpoints. No I/O, no timers of its own. */
export { Kernel, type KernelOptions, type CreateDcOptions, type DcInfo, type BindOptions, type KernelStats, type KernelObserver, type RouteInfo, type Handover, type AbsorbOptions, type Quiescence, type ServiceFrameHandler } from './kernel.js';
export { Process } from './process.js';
export type { Clock, TimerHandle } from './clock.js';
export type * from './frames.js';
export { KERNEL_PROTOCOL_VERSION } from './frames.js';
export type { GrantBackend } from './proc.js';
export type { HandoverSend, HandoverNotify, HandoverReply } from './mailbox.js';
export { formatProcTable, RTS, MISC, type ProcInfo } from './procfs.js';
