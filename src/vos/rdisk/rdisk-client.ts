/**
 * Typed sendrec calls to RDISK over any M3-IPC handle (tools, tests, a client program): each call
 * is one request; data above the inline limit moves through a grant the caller holds while it waits
 * in its sendrec (granted to ANY: only the process it is blocked with can copy). A server that must keep receiving while the disk works uses RdiskDevice instead.
 */
import type { M3Ipc } from '../../ipc/calls.js';
import { ANY } from '../../ipc/endpoint.js';
import { DvsError } from '../../ipc/errors.js';
import type { Message } from '../../ipc/message.js';
import type { Payload } from '../../ipc/payload.js';
import { fromWireError, isPlainMap } from '../../transport/proc-protocol.js';
import { REPLY_OK } from '../server-replies.js';
import type { PeerRef } from '../slot-peer.js';
import { RD_FLUSH, RD_MAX_INLINE, RD_OPEN, RD_READ, RD_SIZE, RD_WRITE } from './rdisk-messages.js';

export interface RdiskDeviceInfo {
  readonly version: number;
  readonly size: number;
  readonly readOnly: boolean;
  readonly maxIo: number;
  readonly maxInline: number;
  /** Served by a replica group: a request whose answer is lost in a failover is sent again. */
  readonly replicated: boolean;
}

/** An RDISK answer's fields; its error rethrown. */
export function checkRdiskAnswer(type: number, r: Payload): Record<string, unknown> {
  if (!isPlainMap(r) || typeof r.ok !== 'boolean') throw new DvsError('EDVSIO', 'RDISK answered with a malformed message: not {ok, ...}');
  if (!r.ok) throw fromWireError(r.error);
  if (type !== REPLY_OK) throw new DvsError('EDVSIO', `RDISK answered ok with type ${type}`);
  return r;
}

export function deviceInfoOf(r: Record<string, unknown>): RdiskDeviceInfo {
  const num = (k: string): number => {
    const v = r[k];
    if (typeof v !== 'number') throw new DvsError('EDVSIO', `RDISK's open answer has no ${k}`);
    return v;
  };
  return { version: num('version'), size: num('size'), readOnly: r.readOnly === true, maxIo: num('maxIo'), maxInline: num('maxInline'), replicated: r.replicated === true };
}

export class RdiskClient {
  constructor(
    private readonly ipc: M3Ipc,
    private readonly rdisk: PeerRef,
    private readonly timeoutMs = 30_000,
  ) {}

  async open(): Promise<RdiskDeviceInfo> {
    return deviceInfoOf(await this.call(RD_OPEN, {}));
  }

  async size(): Promise<number> {
    return (await this.call(RD_SIZE, {})).size as number;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (length <= RD_MAX_INLINE) {
      const r = await this.call(RD_READ, { offset, length });
      if (!(r.data instanceof Uint8Array) || r.data.length !== length) throw new DvsError('EDVSIO', 'RDISK answered a read without its data');
      return r.data;
    }
    const buf = new Uint8Array(length);
    const grant = this.ipc.grant(buf, { grantee: ANY, access: 'write' });
    try {
      await this.call(RD_READ, { offset, length, grant });
    } finally {
      this.ipc.revoke(grant);
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<number> {
    if (data.length <= RD_MAX_INLINE) return (await this.call(RD_WRITE, { offset, length: data.length, data })).seq as number;
    const grant = this.ipc.grant(data, { grantee: ANY, access: 'read' });
    try {
      return (await this.call(RD_WRITE, { offset, length: data.length, grant })).seq as number;
    } finally {
      this.ipc.revoke(grant);
    }
  }

  async flush(): Promise<void> {
    await this.call(RD_FLUSH, {});
  }

  private async call(type: number, payload: Payload): Promise<Record<string, unknown>> {
    const m: Message = await this.rdisk.call((ep) => this.ipc.sendrec(ep, { type, payload }, { timeoutMs: this.timeoutMs }));
    return checkRdiskAnswer(m.type, m.payload);
  }
}
