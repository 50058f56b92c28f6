/** The directory's ways of failing: typed errors, and which store failures leave an outcome unknown. */
import { DvsError, type DvsErrorCode } from '../../ipc/errors.js';

export function fail(code: DvsErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new DvsError(code, message, details === undefined ? {} : { details });
}

export function asDvsError(err: unknown): DvsError {
  return err instanceof DvsError ? err : new DvsError('EDVSIO', err instanceof Error ? err.message : String(err), { cause: err });
}

/** The store was not reached, or did not answer: the call may or may not have taken effect. */
export function isTransient(e: DvsError): boolean {
  return e.code === 'EDVSNOTCONN' || e.code === 'EDVSTIMEDOUT';
}

export const noop = (): void => undefined;
