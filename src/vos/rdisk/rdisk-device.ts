/**
 * RDISK as a block device of a server that keeps receiving while its disk works (FS): every
 * request is a tagged plain send, and the RD_DONE answer comes back through the server's own
 * receive loop, which hands it to `deliver`. So many requests are in flight at once and a client
 * of the server waiting on the disk never blocks the others. Data moves through grants the server
 * makes for RDISK alone, not tied to a sendrec (`whileWaiting: false`).
 */
import type { M3Ipc } from '../../ipc/calls.js';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import type { PeerRef } from '../slot-peer.js';
import { checkRdiskAnswer, deviceInfoOf, type RdiskDeviceInfo } from './rdisk-client.js';
import { RD_DONE, RD_FLUSH, RD_MAX_INLINE, RD_MAX_IO, RD_MAX_TAG, RD_OPEN, RD_READ, RD_WRITE } from './rdisk-messages.js';

export interface RdiskDeviceOptions {
  /** Bound of each request, ms. */
  readonly timeoutMs?: number;
}

interface Pending {
  readonly resolve: (r: Record<string, unknown>) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
  grant: number | undefined;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** To a replica group: how long one attempt waits for its answer before it is sent again. */
const ATTEMPT_MS = 2000;
/** What a request to a group that is failing over can meet. */
const FAILOVER_CODES = ['EDVSTIMEDOUT', 'EDVSNOTCONN', 'EDVSDSTDIED', 'EDVSDEADSRCDST', 'EDVSNOTBIND', 'EDVSNONODE', 'EDVSSHUTDOWN'] as const;

export class RdiskDevice {
  private readonly pending = new Map<number, Pending>();
  private nextTag = 1;
  private readonly timeoutMs: number;

  private constructor(
    private readonly ipc: M3Ipc,
    private readonly peer: PeerRef,
    readonly info: RdiskDeviceInfo,
    opts: RdiskDeviceOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Asks RDISK for the device, by sendrec: call before the server starts serving. */
  static async open(ipc: M3Ipc, peer: PeerRef, opts: RdiskDeviceOptions = {}): Promise<RdiskDevice> {
    const m = await peer.call((ep) => ipc.sendrec(ep, { type: RD_OPEN, payload: {} }, { timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS }));
    return new RdiskDevice(ipc, peer, deviceInfoOf(checkRdiskAnswer(m.type, m.payload)), opts);
  }

  get size(): number {
    return this.info.size;
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Takes an RD_DONE message of this device; false for any other message. */
  deliver(m: Message): boolean {
    if (m.type !== RD_DONE || m.source !== this.peer.endpoint) return false;
    const p = m.payload as Record<string, unknown> | null;
    const tag = typeof p === 'object' && p !== null ? p.tag : undefined;
    const pend = typeof tag === 'number' ? this.pending.get(tag) : undefined;
    // An answer nobody waits for any more (its request timed out): dropped.
    if (pend === undefined || typeof tag !== 'number') return true;
    this.settle(tag, pend);
    try {
      pend.resolve(checkRdiskAnswer(typeof p?.type === 'number' ? p.type : -1, p as Payload));
    } catch (err) {
      pend.reject(err as Error);
    }
    return true;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (length <= RD_MAX_INLINE) {
      const r = await this.request(RD_READ, { offset, length });
      if (!(r.data instanceof Uint8Array) || r.data.length !== length) throw new DvsError('EDVSIO', 'RDISK answered a read without its data');
      return r.data;
    }
    const out = new Uint8Array(length);
    for (let at = 0; at < length; at += RD_MAX_IO) {
      const part = out.subarray(at, Math.min(length, at + RD_MAX_IO));
      await this.request(RD_READ, { offset: offset + at, length: part.length }, { buffer: part, access: 'write' });
    }
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length <= RD_MAX_INLINE) {
      await this.request(RD_WRITE, { offset, length: data.length, data });
      return;
    }
    for (let at = 0; at < data.length; at += RD_MAX_IO) {
      const part = data.subarray(at, Math.min(data.length, at + RD_MAX_IO));
      await this.request(RD_WRITE, { offset: offset + at, length: part.length }, { buffer: part, access: 'read' });
    }
  }

  async flush(): Promise<void> {
    await this.request(RD_FLUSH, {});
  }

  /** Fails every request in flight (the server stops). */
  close(): void {
    for (const [tag, p] of [...this.pending]) {
      this.settle(tag, p);
      p.reject(new DvsError('EDVSSHUTDOWN', 'the disk device was closed'));
    }
  }

  /**
   * One request, within the device's timeout. To a replica group, an attempt whose answer does not
   * come within ATTEMPT_MS, or that could not be sent because the primary just went, is sent again
   * (reads and writes of whole extents are idempotent, and FS never has two writes of one block in
   * flight): the new primary answers it.
   */
  private async request(type: number, fields: Record<string, Payload>, data?: { buffer: Uint8Array; access: 'read' | 'write' }): Promise<Record<string, unknown>> {
    if (!this.info.replicated) return this.attempt(type, fields, data, this.timeoutMs);
    const deadline = Date.now() + this.timeoutMs;
    for (let n = 0; ; n++) {
      const left = deadline - Date.now();
      try {
        return await this.attempt(type, fields, data, Math.max(1, Math.min(ATTEMPT_MS, left)));
      } catch (err) {
        if (!FAILOVER_CODES.some((c) => isDvsError(err, c)) || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(200, 10 * 2 ** Math.min(n, 5))));
      }
    }
  }

  private attempt(type: number, fields: Record<string, Payload>, data: { buffer: Uint8Array; access: 'read' | 'write' } | undefined, timeoutMs: number): Promise<Record<string, unknown>> {
    const tag = this.nextTag;
    this.nextTag = this.nextTag >= RD_MAX_TAG ? 1 : this.nextTag + 1;
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(tag);
        if (p === undefined) return;
        this.settle(tag, p);
        reject(new DvsError('EDVSTIMEDOUT', `RDISK did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const pend: Pending = { resolve, reject, timer, grant: undefined };
      this.pending.set(tag, pend);
      this.peer
        .call(async (ep) => {
          if (pend.grant !== undefined) this.ipc.revoke(pend.grant);
          pend.grant = data === undefined ? undefined : this.ipc.grant(data.buffer, { grantee: ep, access: data.access, whileWaiting: false });
          const payload = pend.grant === undefined ? { ...fields, tag } : { ...fields, tag, grant: pend.grant };
          await this.ipc.send(ep, { type, payload }, { timeoutMs });
        })
        .catch((err: unknown) => {
          if (this.pending.get(tag) !== pend) return;
          this.settle(tag, pend);
          reject(err as Error);
        });
    });
  }

  private settle(tag: number, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(tag);
    if (p.grant !== undefined) {
      try {
        this.ipc.revoke(p.grant);
      } catch {
        // Already gone with the endpoint.
      }
      p.grant = undefined;
    }
  }
}
