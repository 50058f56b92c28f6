/** What the parts of one directory share: the store, its key layout, the cache, the settings. */
import type { Clock } from '../../kernel/clock.js';
import type { DirectoryKeys } from '../keys.js';
import type { CoordinationStore } from '../store.js';
import type { DirectoryCache } from './cache.js';
import type { DirectorySettings } from './options.js';
import type { EmitDirectoryEvent } from './records.js';
import type { TxnRunner } from './txn-runner.js';

export interface DirectoryContext {
  readonly store: CoordinationStore;
  readonly keys: DirectoryKeys;
  readonly clock: Clock;
  readonly settings: DirectorySettings;
  readonly cache: DirectoryCache;
  readonly txns: TxnRunner;
  readonly emit: EmitDirectoryEvent;
}
