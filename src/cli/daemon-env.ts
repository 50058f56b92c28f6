/**
 * Environment for daemon processes. glibc serves allocations above 128 KiB with a fresh mmap each
 * time, so every 1 MiB frame a link receives costs 256 page faults when first written (about
 * 250 MB/s). Raising the mmap and trim thresholds keeps such buffers in the heap, reused: bulk
 * copies become about twice as fast and far steadier (docs/deploy.md). glibc reads these variables
 * at process start, so they must be in the environment the daemon is started with.
 */
export const DAEMON_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(256 * 1024 * 1024),
};

/** `base` with the daemon's malloc settings added where `base` does not set them already. */
export function daemonEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const [k, v] of Object.entries(DAEMON_MALLOC_ENV)) env[k] ??= v;
  return env;
}
