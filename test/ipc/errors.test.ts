/**
 * The error catalogue (reference §2.4): every code keeps the original DVK errno, errnos are unique,
 * and a DvsError survives the wire as its errno (fromErrno) or as JSON (toJSON).
 */
import { describe, expect, it } from 'vitest';
import { codeOfErrno, DvsError, ERRNO, isDvsError, type DvsErrorCode } from '../../src/ipc/errors.js';

/** Numbers copied from the reference's §2.4 (MINIX numbering for 1–75). */
const REFERENCE: Record<string, number> = {
  EDVSPERM: -1,
  EDVSSRCH: -3,
  EDVSINTR: -4,
  EDVSIO: -5,
  EDVSAGAIN: -11,
  EDVSNOMEM: -12,
  EDVSACCES: -13,
  EDVSFAULT: -14,
  EDVSBUSY: -16,
  EDVSEXIST: -17,
  EDVSINVAL: -22,
  EDVSNOSPC: -28,
  EDVSRANGE: -34,
  EDVSNOSYS: -38,
  EDVSPACKSIZE: -50,
  EDVSBADDEST: -55,
  EDVSDSTNOTRCH: -56,
  EDVSCONNREFUSED: -59,
  EDVSTIMEDOUT: -61,
  EDVSNOTCONN: -64,
  EDVSSHUTDOWN: -65,
  EDVSMSGSIZE: -73,
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
  EDVSPRIMARY: -401,
  EDVSNOREPLICA: -402,
  EDVSRESTARTSYS: -512,
};

const ALL_CODES = Object.keys(ERRNO) as DvsErrorCode[];

describe('error catalogue', () => {
  it.each(Object.entries(REFERENCE))('%s has the reference errno %i', (code, errno) => {
    expect(ERRNO[code as DvsErrorCode]).toBe(errno);
    expect(new DvsError(code as DvsErrorCode).errno).toBe(errno);
  });

  it('has negative, unique errnos for every code', () => {
    const seen = new Map<number, string>();
    for (const code of ALL_CODES) {
      const errno = ERRNO[code];
      expect(Number.isInteger(errno), code).toBe(true);
      expect(errno, code).toBeLessThan(0);
      expect(seen.get(errno), `${code} reuses ${errno}`).toBeUndefined();
      seen.set(errno, code);
      expect(code.startsWith('EDVS'), code).toBe(true);
    }
    expect(seen.size).toBe(ALL_CODES.length);
  });

  it('keeps the gap at -322 that the reference leaves', () => {
    expect(codeOfErrno(-322)).toBeUndefined();
    expect(codeOfErrno(-321)).toBe('EDVSNOMSG');
    expect(codeOfErrno(-323)).toBe('EDVSDCRUN');
  });
});

describe('DvsError', () => {
  it('is an Error with a stable name, code, errno and a message led by the code', () => {
    const err = new DvsError('EDVSDSTDIED');
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(DvsError);
    expect(err.name).toBe('DvsError');
    expect(err.code).toBe('EDVSDSTDIED');
    expect(err.errno).toBe(-109);
    expect(err.message).toBe('EDVSDSTDIED: destination died');
    expect(err.details).toBeUndefined();
    expect(new DvsError('EDVSTIMEDOUT', 'waited 5 ms').message).toBe('EDVSTIMEDOUT: waited 5 ms');
    // A code without a default text falls back to its name.
    expect(new DvsError('EDVSNOREPLICA').message).toBe('EDVSNOREPLICA: EDVSNOREPLICA');
  });

  it('keeps details and cause', () => {
    const cause = new Error('socket closed');
    const err = new DvsError('EDVSNOTCONN', 'link lost', { details: { node: 3 }, cause });
    expect(err.details).toEqual({ node: 3 });
    expect(err.cause).toBe(cause);
    expect(new DvsError('EDVSNOTCONN').cause).toBeUndefined();
  });

  it('round-trips every code through its errno', () => {
    for (const code of ALL_CODES) {
      expect(codeOfErrno(ERRNO[code])).toBe(code);
      const back = DvsError.fromErrno(ERRNO[code]);
      expect(back).toBeInstanceOf(DvsError);
      expect(back.code).toBe(code);
      expect(back.errno).toBe(ERRNO[code]);
    }
  });

  it('fromErrno keeps a given message and details, and names the errno otherwise', () => {
    const withText = DvsError.fromErrno(-61, 'remote side timed out', { details: { node: 2 } });
    expect(withText.code).toBe('EDVSTIMEDOUT');
    expect(withText.message).toBe('EDVSTIMEDOUT: remote side timed out');
    expect(withText.details).toEqual({ node: 2 });
    expect(DvsError.fromErrno(-109).message).toBe('EDVSDSTDIED: errno -109');
  });

  it('maps an unknown errno to EDVSINVAL, mentioning the number', () => {
    for (const errno of [0, 1, -322, -9999, 42]) {
      const err = DvsError.fromErrno(errno);
      expect(err.code).toBe('EDVSINVAL');
      expect(err.errno).toBe(-22);
      expect(err.message).toContain(String(errno));
    }
  });

  it('serialises to JSON with code, errno, message and details only when present', () => {
    const plain = new DvsError('EDVSSLOTUSED');
    expect(plain.toJSON()).toEqual({ code: 'EDVSSLOTUSED', errno: -337, message: 'EDVSSLOTUSED: slot already in use' });
    expect('details' in plain.toJSON()).toBe(false);
    const detailed = new DvsError('EDVSENDPOINT', 'stale', { details: { endpoint: 35576 } });
    const json: unknown = JSON.parse(JSON.stringify(detailed));
    expect(json).toEqual({ code: 'EDVSENDPOINT', errno: -306, message: 'EDVSENDPOINT: stale', details: { endpoint: 35576 } });
    // The JSON form rebuilds the same error on the other side of the wire.
    const back = DvsError.fromErrno((json as { errno: number }).errno);
    expect(back.code).toBe('EDVSENDPOINT');
  });

  it('isDvsError tells DvsErrors apart and matches a code', () => {
    const err = new DvsError('EDVSWOKENUP');
    expect(isDvsError(err)).toBe(true);
    expect(isDvsError(err, 'EDVSWOKENUP')).toBe(true);
    expect(isDvsError(err, 'EDVSINTR')).toBe(false);
    expect(isDvsError(new Error('EDVSWOKENUP'))).toBe(false);
    expect(isDvsError({ code: 'EDVSWOKENUP', errno: -348 })).toBe(false);
    expect(isDvsError(undefined)).toBe(false);
  });
});
