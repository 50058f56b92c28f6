/**
 * The service the `migration` bench suite moves: a daemon-hosted coroutine (the `serve` request)
 * whose state is `stateBytes` random bytes, carried whole by snapshot and restore. Every request is
 * answered at once with a running count and the state's length, so a caller sees at a glance that
 * the state moved along and no request was answered twice.
 */
import { randomFillSync } from 'node:crypto';
import { ANY, isNotification, type Payload } from '../../src/ipc/index.js';
import type { Service } from '../../src/services/service.js';

interface Counted {
  readonly n: number;
  readonly bytes: number;
}

function stateBytesOf(args: Payload): number {
  const v = (args as { stateBytes?: unknown } | null)?.stateBytes;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 8) throw new Error(`stateBytes must be an integer ≥ 8, got ${String(v)}`);
  return v;
}

export default function createService(args: Payload): Service {
  let state: Buffer = Buffer.allocUnsafe(stateBytesOf(args));
  randomFillSync(state);
  // The count lives inside the state (its first 8 bytes), so it is what moved that answers.
  const next = (): number => {
    const n = Number(state.readBigUInt64LE(0) & 0xffffffffffffn) + 1;
    state.writeBigUInt64LE(BigInt(n), 0);
    return n;
  };
  state.writeBigUInt64LE(0n, 0);
  return {
    async run(ipc) {
      for (;;) {
        const m = await ipc.receive(ANY);
        if (isNotification(m)) continue;
        const reply: Counted = { n: next(), bytes: state.length };
        await ipc.reply(m.source, { type: 0, payload: { ...reply } });
      }
    },
    snapshot: () => state,
    restore: (s) => {
      state = Buffer.from(s.buffer, s.byteOffset, s.byteLength);
    },
  };
}
