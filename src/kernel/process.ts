/** The handle a bound process uses: the M3-IPC calls of one endpoint, served by its kernel. */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef, M3Ipc, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import type { DcState } from './dc.js';
import type { Kernel } from './kernel.js';
import type { LocalProc } from './proc.js';

export class Process implements M3Ipc {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  private readonly kernel: Kernel;
  private readonly dc: DcState;
  private readonly proc: LocalProc;

  /** @internal Created by Kernel.bind. */
  constructor(kernel: Kernel, dc: DcState, proc: LocalProc) {
    this.kernel = kernel;
    this.dc = dc;
    this.proc = proc;
    this.dcid = dc.dcid;
    this.endpoint = proc.endpoint;
  }

  get name(): string {
    return this.proc.name;
  }

  get bound(): boolean {
    return this.proc.alive;
  }

  send(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<void> {
    return this.kernel.send(this.dc, this.proc, dst, msg, opts);
  }

  receive(src: Endpoint, opts?: CallOptions): Promise<Message> {
    return this.kernel.receive(this.dc, this.proc, src, opts);
  }

  sendrec(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.kernel.sendrec(this.dc, this.proc, dst, msg, opts);
  }

  receiveRequest(opts?: CallOptions): Promise<Message> {
    return this.kernel.receiveRequest(this.dc, this.proc, opts);
  }

  reply(dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    return this.kernel.reply(this.dc, this.proc, dst, msg);
  }

  replyAndReceive(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    return this.kernel.replyAndReceive(this.dc, this.proc, dst, msg, opts);
  }

  notify(dst: Endpoint, opts?: NotifyOptions): Promise<NotifyOutcome> {
    return this.kernel.notify(this.dc, this.proc, dst, opts);
  }

  grant(buffer: Uint8Array, opts: GrantOptions): number {
    return this.kernel.grant(this.proc, this.dc, buffer, opts);
  }

  revoke(grant: number): void {
    this.kernel.revoke(this.proc, grant);
  }

  copyFrom(src: GrantRef, into: Uint8Array, opts?: CopyFromOptions): Promise<number> {
    return this.kernel.copyFrom(this.dc, this.proc, src, into, opts);
  }

  copyTo(dst: GrantRef, data: Uint8Array, opts?: CallOptions): Promise<number> {
    return this.kernel.copyTo(this.dc, this.proc, dst, data, opts);
  }

  copy(src: GrantRef, dst: GrantRef, length: number, opts?: CallOptions): Promise<number> {
    return this.kernel.copy(this.dc, this.proc, src, dst, length, opts);
  }

  unbind(): Promise<void> {
    try {
      if (this.proc.alive) this.kernel.unbind(this.dcid, this.endpoint);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
}
