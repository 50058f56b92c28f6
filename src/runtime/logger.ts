/**
 * The one logger interface of DVS: pino's call shape (`log.info(fields, message)`), so a pino
 * logger is passed as it is, and layers below the daemon never depend on pino itself.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Drops everything: the default where no logger is given. */
export const silentLogger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
