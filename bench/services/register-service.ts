/**
 * A register, the service of the replica-group tests and of the `replication` bench suite: WRITE
 * (1) {rid, value}, READ (2), CAS (3) {rid, expect, value}. Each client's last write is kept with
 * its answer, so a call retried with the same rid after a failover is answered from the state, not
 * applied twice. `createReplicatedService` is its replica-group form (docs/replication.md); the
 * default export is the same register as a plain service, the unreplicated baseline.
 */
import { isNotification, type M3Ipc, type Message, type Payload } from '../../src/ipc/index.js';
import type { Prepared, ReplicaAnswer, ReplicatedService } from '../../src/services/replica/replicated-service.js';
import type { Service } from '../../src/services/service.js';

export const REG_WRITE = 1;
export const REG_READ = 2;
export const REG_CAS = 3;

interface State {
  value: number | null;
  last: Record<string, { rid: number; answer: Record<string, Payload> }>;
}

interface Op {
  readonly t: number;
  readonly source: number;
  readonly rid: number;
  readonly value: number;
  readonly expect: number | null;
}

const ok = (fields: Record<string, Payload>): ReplicaAnswer => ({ type: 0, payload: { ok: true, ...fields } });
const bad = (message: string): ReplicaAnswer => ({ type: -22, payload: { ok: false, error: { code: 'EDVSINVAL', errno: -22, message } } });

class Register {
  state: State = { value: null, last: {} };

  /** A read's answer, a retried write's remembered answer, or the op a write becomes. */
  prepare(m: Message): { answer: ReplicaAnswer; op?: Op } {
    const p = (m.payload ?? {}) as Record<string, unknown>;
    if (m.type === REG_READ) return { answer: ok({ value: this.state.value }) };
    if (m.type !== REG_WRITE && m.type !== REG_CAS) return { answer: bad(`unknown request ${m.type}`) };
    if (typeof p.rid !== 'number' || typeof p.value !== 'number') return { answer: bad('rid and value must be numbers') };
    const seen = this.state.last[String(m.source)];
    if (seen?.rid === p.rid) return { answer: ok(seen.answer) };
    return { answer: ok({}), op: { t: m.type, source: m.source, rid: p.rid, value: p.value, expect: typeof p.expect === 'number' ? p.expect : null } };
  }

  apply(op: Op): ReplicaAnswer {
    let answer: Record<string, Payload>;
    if (op.t === REG_WRITE) {
      this.state.value = op.value;
      answer = { written: true };
    } else {
      const swapped = this.state.value === op.expect;
      if (swapped) this.state.value = op.value;
      answer = { swapped };
    }
    this.state.last[String(op.source)] = { rid: op.rid, answer };
    return ok(answer);
  }
}

export function createReplicatedService(): ReplicatedService {
  const reg = new Register();
  let encoded: Buffer | undefined;
  let incoming: Buffer | undefined;
  const bytes = (): Buffer => (encoded ??= Buffer.from(JSON.stringify(reg.state)));
  return {
    open: () => Promise.resolve(),
    prepare(_ipc: M3Ipc, m: Message): Promise<Prepared> {
      const { answer, op } = reg.prepare(m);
      return Promise.resolve(op === undefined ? { answer } : { answer, update: Buffer.from(JSON.stringify(op)) });
    },
    apply(update: Uint8Array): Promise<ReplicaAnswer> {
      encoded = undefined;
      return Promise.resolve(reg.apply(JSON.parse(Buffer.from(update).toString()) as Op));
    },
    stateSize: () => Promise.resolve(bytes().length),
    readState: (offset, length) => Promise.resolve(bytes().subarray(offset, offset + length)),
    writeState(offset, data, size): Promise<void> {
      // A piece of the primary's state over this member's own, resized to the primary's size.
      if (incoming?.length !== size) {
        const base = incoming ?? bytes();
        incoming = Buffer.alloc(size);
        base.copy(incoming, 0, 0, Math.min(size, base.length));
      }
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(incoming, offset);
      return Promise.resolve();
    },
    flush(): Promise<void> {
      if (incoming !== undefined) {
        reg.state = JSON.parse(incoming.toString()) as State;
        encoded = undefined;
        incoming = undefined;
      }
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
}

export default function createService(): Service {
  const reg = new Register();
  return {
    async run(ipc: M3Ipc): Promise<void> {
      for (;;) {
        let m: Message;
        try {
          m = await ipc.receiveRequest();
        } catch {
          return;
        }
        if (isNotification(m)) continue;
        const { answer, op } = reg.prepare(m);
        await ipc.reply(m.source, op === undefined ? answer : reg.apply(op)).catch(() => undefined);
      }
    },
  };
}
