/** AbortSwitch: the light AbortLike the daemon gives every blocking request. */
import { describe, expect, it } from 'vitest';
import { AbortSwitch } from '../../src/ipc/calls.js';

describe('AbortSwitch', () => {
  it('runs every listener still registered, once, in registration order', () => {
    const s = new AbortSwitch();
    const ran: string[] = [];
    const a = (): void => void ran.push('a');
    const b = (): void => void ran.push('b');
    const c = (): void => void ran.push('c');
    const d = (): void => void ran.push('d');
    s.addEventListener('abort', a);
    s.addEventListener('abort', b);
    s.removeEventListener('abort', a);
    s.addEventListener('abort', c);
    s.addEventListener('abort', d);
    s.removeEventListener('abort', c);
    expect(s.aborted).toBe(false);
    s.abort();
    s.abort();
    expect(s.aborted).toBe(true);
    expect(ran).toEqual(['b', 'd']);
  });

  it('keeps a lone listener, and one added after the first was removed', () => {
    const s = new AbortSwitch();
    const ran: string[] = [];
    const a = (): void => void ran.push('a');
    const b = (): void => void ran.push('b');
    s.addEventListener('abort', a);
    s.removeEventListener('abort', a);
    s.removeEventListener('abort', a);
    s.addEventListener('abort', b);
    s.abort();
    expect(ran).toEqual(['b']);
  });

  it('ignores listeners added after it fired', () => {
    const s = new AbortSwitch();
    s.abort();
    let ran = false;
    s.addEventListener('abort', () => (ran = true));
    s.abort();
    expect(ran).toBe(false);
  });
});
