/**
 * The client library of DVS: what an OS process uses to reach its node daemon over the process
 * socket (docs/protocol.md). `connect` → `DvsClient`; `client.bind` → `RemoteProcess`, which
 * implements the same `M3Ipc` interface as the in-process `Process`.
 */
export { connect, DvsClient, type ConnectOptions, type ClientBindOptions, type NodeInfo } from './client.js';
export { RemoteProcess, type MovedInfo, type SnapshotHook } from './remote-process.js';
export { readTokenFile } from '../transport/proc-token.js';
export { PROC_PROTOCOL_VERSION, MAX_SNAPSHOT_BYTES, type HelloResult, type BindResult } from '../transport/proc-protocol.js';
export { ANY, NONE, SELF, type Endpoint } from '../ipc/endpoint.js';
export { DvsError, ERRNO, isDvsError, codeOfErrno, type DvsErrorCode } from '../ipc/errors.js';
export { NOTIFY_MESSAGE, isNotification, type Message, type OutgoingMessage, type NotifyPayload } from '../ipc/message.js';
export type { Payload } from '../ipc/payload.js';
export type { M3Ipc, CallOptions, CopyFromOptions, GrantAccess, GrantOptions, GrantRef, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
export type { ProcInfo } from '../kernel/procfs.js';
export { STOP_SIGNALS, type RunEndpoint, type RunInfo, type RunRequest, type RunSpec, type RunState, type StopSignal } from '../transport/run-spec.js';
export { serveModule, hostedServices, migrate, type HostedServiceInfo, type MigrationResult, type MigrateRequest, type ServeOptions } from './services.js';
export { Vos, vosLayout, isUndeliveredError, type OpenVosOptions, type VosServerView, type VosView } from './vos.js';
export { VosFiles, VosFileHandle, VosStats, VosDirent, vosPath } from './vos-fs.js';
export type { FsStatfs, OpenFlags } from '../vos/fs/fs-client.js';
export type { PmPsRow, PmWaitResult, PmSpawnOptions, PmWaitOptions } from '../vos/pm/pm-client.js';
