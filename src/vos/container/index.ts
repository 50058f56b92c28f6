/** A DC as a container on a node: namespaces, cgroups, and the DcContainer SYSTASK starts processes in. */
export { DcContainer } from './container.js';
export type { ContainerKind, ContainerMode, DcChildProcess, DcContainerOptions, DcExit, DcPid, DcProcessInfo, DcSpawnOptions, DcUsage, StopOptions } from './container.js';
export { containerSupport, probeSupport } from './support.js';
export type { ContainerSupport, ContainerSupportOptions, SupportProbe } from './support.js';
export { DcCgroup, cgroupName, detectCgroups, validateLimits } from './cgroups.js';
export type { CgroupHost, CgroupIo, CgroupLimits, CgroupResource, CgroupUsage, CgroupVersion, DetectCgroupsOptions } from './cgroups.js';
export { DcNamespaces } from './namespaces.js';
export type { NsProcess } from './namespaces.js';
