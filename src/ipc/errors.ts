/**
 * The DVS error catalogue (reference §2.4): every failure of an M3-IPC call is a `DvsError` with a
 * stable `code` name and the original numeric errno, so codes survive the wire unchanged.
 */

/** Code name → original errno (negative, as the DVK returned them). */
export const ERRNO = {
  // 1–40: POSIX-like (MINIX numbering).
  EDVSPERM: -1,
  EDVSNOENT: -2,
  EDVSSRCH: -3,
  EDVSINTR: -4,
  EDVSIO: -5,
  EDVSNXIO: -6,
  EDVS2BIG: -7,
  EDVSNOEXEC: -8,
  EDVSBADF: -9,
  EDVSCHILD: -10,
  EDVSAGAIN: -11,
  EDVSNOMEM: -12,
  EDVSACCES: -13,
  EDVSFAULT: -14,
  EDVSNOTBLK: -15,
  EDVSBUSY: -16,
  EDVSEXIST: -17,
  EDVSXDEV: -18,
  EDVSNODEV: -19,
  EDVSNOTDIR: -20,
  EDVSISDIR: -21,
  EDVSINVAL: -22,
  EDVSNFILE: -23,
  EDVSMFILE: -24,
  EDVSNOTTY: -25,
  EDVSTXTBSY: -26,
  EDVSFBIG: -27,
  EDVSNOSPC: -28,
  EDVSSPIPE: -29,
  EDVSROFS: -30,
  EDVSMLINK: -31,
  EDVSPIPE: -32,
  EDVSDOM: -33,
  EDVSRANGE: -34,
  EDVSDEADLK: -35,
  EDVSNAMETOOLONG: -36,
  EDVSNOLCK: -37,
  EDVSNOSYS: -38,
  EDVSNOTEMPTY: -39,
  EDVSLOOP: -40,
  // 50–75: networking.
  EDVSPACKSIZE: -50,
  EDVSOUTOFBUFS: -51,
  EDVSBADIOCTL: -52,
  EDVSBADMODE: -53,
  EDVSWOULDBLOCK: -54,
  EDVSBADDEST: -55,
  EDVSDSTNOTRCH: -56,
  EDVSISCONN: -57,
  EDVSADDRINUSE: -58,
  EDVSCONNREFUSED: -59,
  EDVSCONNRESET: -60,
  EDVSTIMEDOUT: -61,
  EDVSURG: -62,
  EDVSNOURG: -63,
  EDVSNOTCONN: -64,
  EDVSSHUTDOWN: -65,
  EDVSNOCONN: -66,
  EDVSAFNOSUPPORT: -67,
  EDVSPROTONOSUPPORT: -68,
  EDVSPROTOTYPE: -69,
  EDVSINPROGRESS: -70,
  EDVSADDRNOTAVAIL: -71,
  EDVSALREADY: -72,
  EDVSMSGSIZE: -73,
  EDVSNOTSOCK: -74,
  EDVSNOPROTOOPT: -75,
  // 101–110, 201: MINIX IPC.
  EDVSLOCKED: -101,
  EDVSBADCALL: -102,
  EDVSBADSRCDST: -103,
  EDVSCALLDENIED: -104,
  EDVSDEADSRCDST: -105,
  EDVSNOTREADY: -106,
  EDVSBADREQUEST: -107,
  EDVSSRCDIED: -108,
  EDVSDSTDIED: -109,
  EDVSTRAPDENIED: -110,
  EDVSDONTREPLY: -201,
  // 300–352: DVS-specific.
  EDVSBADNODEID: -301,
  EDVSBADDCID: -302,
  EDVSDCNOTRUN: -303,
  EDVSBADPROC: -304,
  EDVSBADPID: -305,
  EDVSENDPOINT: -306,
  EDVSNOPROXY: -307,
  EDVSRMTPROC: -308,
  EDVSLCLPROC: -309,
  EDVSNOTBIND: -310,
  EDVSPROXYRUN: -311,
  EDVSACKDST: -312,
  EDVSACKSRC: -313,
  EDVSACKWAIT: -314,
  EDVSNODEBUSY: -315,
  EDVSNONODE: -316,
  EDVSDVSBUSY: -317,
  EDVSDVSINIT: -318,
  EDVSNODCNODE: -319,
  EDVSPROCRUN: -320,
  EDVSNOMSG: -321,
  EDVSDCRUN: -323,
  EDVSPROCSTS: -324,
  EDVSNODEFREE: -325,
  EDVSDCNODE: -326,
  EDVSBADPROXY: -327,
  EDVSONCOPY: -328,
  EDVSENQUEUED: -329,
  EDVSOVERRUN: -330,
  EDVSBADOWNER: -331,
  EDVSMIGRATE: -332,
  EDVSPROXYFREE: -333,
  EDVSGRPLEADER: -334,
  EDVSPRIVILEGES: -335,
  EDVSBINDTYPE: -336,
  EDVSSLOTUSED: -337,
  EDVSBADRANGE: -338,
  EDVSBADVALUE: -339,
  EDVSBADDIR: -340,
  EDVSBADFILE: -341,
  EDVSRSCBUSY: -342,
  EDVSNAMESIZE: -343,
  EDVSALLOCMEM: -344,
  EDVSPROXYID: -345,
  EDVSREPLPROC: -346,
  EDVSALIGN: -347,
  EDVSWOKENUP: -348,
  EDVSBADTRAMP: -349,
  EDVSUSR2USR: -350,
  EDVSKRN2USR: -351,
  EDVSUSR2KRN: -352,
  // Replication.
  EDVSPRIMARY: -401,
  EDVSNOREPLICA: -402,
  EDVSRESTARTSYS: -512,
} as const;

export type DvsErrorCode = keyof typeof ERRNO;

const CODE_BY_ERRNO = new Map<number, DvsErrorCode>(
  (Object.entries(ERRNO) as [DvsErrorCode, number][]).map(([code, errno]) => [errno, code]),
);

/** Short default texts for the codes a caller meets most; the rest fall back to the code name. */
const DEFAULT_TEXT: Partial<Record<DvsErrorCode, string>> = {
  EDVSINTR: 'call aborted',
  EDVSBUSY: 'resource busy',
  EDVSINVAL: 'invalid argument',
  EDVSRANGE: 'value out of range',
  EDVSBADDEST: 'bad destination',
  EDVSTIMEDOUT: 'call timed out',
  EDVSNOTCONN: 'peer node not connected',
  EDVSSHUTDOWN: 'endpoint or kernel shut down',
  EDVSMSGSIZE: 'message payload too large',
  EDVSBADCALL: 'call not allowed for this process',
  EDVSDEADSRCDST: 'peer died during sendrec',
  EDVSSRCDIED: 'source died',
  EDVSDSTDIED: 'destination died',
  EDVSTRAPDENIED: 'no permission for this destination',
  EDVSBADDCID: 'unknown or invalid DC',
  EDVSENDPOINT: 'bad or stale endpoint',
  EDVSNOTBIND: 'endpoint not bound',
  EDVSNODCNODE: 'node not in the DC',
  EDVSDCRUN: 'DC already running',
  EDVSPROCSTS: 'wrong process state',
  EDVSOVERRUN: 'notification already pending',
  EDVSPRIVILEGES: 'insufficient privileges',
  EDVSSLOTUSED: 'slot already in use',
  EDVSBADVALUE: 'value cannot be carried in a message',
  EDVSWOKENUP: 'woken up',
  EDVSDVSINIT: 'kernel not initialised',
};

export interface DvsErrorOptions {
  /** Extra structured context (endpoint, node, grant, ...), kept small and serialisable. */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/** The one error type of DVS. `code` is stable; `errno` is the original DVK number. */
export class DvsError extends Error {
  override readonly name = 'DvsError';
  readonly code: DvsErrorCode;
  readonly errno: number;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: DvsErrorCode, message?: string, options: DvsErrorOptions = {}) {
    super(`${code}: ${message ?? DEFAULT_TEXT[code] ?? code}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = ERRNO[code];
    this.details = options.details;
  }

  /** Rebuilds an error from its errno, as carried by an ACK on the wire. */
  static fromErrno(errno: number, message?: string, options?: DvsErrorOptions): DvsError {
    return new DvsError(codeOfErrno(errno) ?? 'EDVSINVAL', message ?? `errno ${errno}`, options);
  }

  toJSON(): { code: DvsErrorCode; errno: number; message: string; details?: Readonly<Record<string, unknown>> } {
    return this.details === undefined
      ? { code: this.code, errno: this.errno, message: this.message }
      : { code: this.code, errno: this.errno, message: this.message, details: this.details };
  }
}

export function codeOfErrno(errno: number): DvsErrorCode | undefined {
  return CODE_BY_ERRNO.get(errno);
}

export function isDvsError(err: unknown, code?: DvsErrorCode): err is DvsError {
  return err instanceof DvsError && (code === undefined || err.code === code);
}
