/** The exit codes of `dvs` (docs/deploy.md, "The dvs command"). */
import { CommanderError } from 'commander';
import { UnreachableError } from './reach.js';

export const EXIT = Object.freeze({
  ok: 0,
  /** The command failed (a DvsError: bad state, refused, invalid configuration...). */
  error: 1,
  /** Bad usage: unknown command or option, a malformed argument. */
  usage: 2,
  /** Something the command needs (the store, a daemon) could not be reached within its --timeout. */
  unreachable: 3,
});

export function exitCodeOf(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof UnreachableError) return EXIT.unreachable;
  return EXIT.error;
}
