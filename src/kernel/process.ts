/** The handle a bound process uses: the M3-IPC calls of one endpoint, served by its kernel. */
import type { CallOptions, CopyFromOptions, GrantOptions, GrantRef, M3Ipc, NotifyOptions, NotifyOutcome } from '../ipc/calls.js';
import type { Endpoint } from '../ipc/endpoint.js';
import type { Message, OutgoingMessage } from '../ipc/message.js';
import type { LocalProc } from './proc.js';

/** What a Process needs from its kernel: the calls of the endpoint it stands for, and nothing else. */
export interface ProcessCalls {
  send(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<void>;
  receive(proc: LocalProc, src: Endpoint, opts: CallOptions | undefined): Promise<Message>;
  sendrec(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message>;
  receiveRequest(proc: LocalProc, opts: CallOptions | undefined): Promise<Message>;
  reply(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage): Promise<void>;
  replyAndReceive(proc: LocalProc, dst: Endpoint, msg: OutgoingMessage, opts: CallOptions | undefined): Promise<Message>;
  notify(proc: LocalProc, dst: Endpoint, opts: NotifyOptions | undefined): Promise<NotifyOutcome>;
  grant(proc: LocalProc, buffer: Uint8Array, opts: GrantOptions): number;
  revoke(proc: LocalProc, grant: number): void;
  copyFrom(proc: LocalProc, src: GrantRef, into: Uint8Array, opts: CopyFromOptions | undefined): Promise<number>;
  copyTo(proc: LocalProc, dst: GrantRef, data: Uint8Array, opts: CallOptions | undefined): Promise<number>;
  copy(proc: LocalProc, src: GrantRef, dst: GrantRef, length: number, opts: CallOptions | undefined): Promise<number>;
  unbind(proc: LocalProc): void;
}

/** What a call of a silenced process returns. */
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

export class Process implements M3Ipc {
  readonly dcid: number;
  readonly endpoint: Endpoint;
  private readonly calls: ProcessCalls;
  private readonly proc: LocalProc;

  /** @internal Created by the kernel when it binds (or absorbs) an endpoint. */
  constructor(calls: ProcessCalls, proc: LocalProc) {
    this.calls = calls;
    this.proc = proc;
    this.dcid = proc.dcid;
    this.endpoint = proc.endpoint;
  }

  get name(): string {
    return this.proc.name;
  }

  /** False once unbound, or once the endpoint moved to another node (its handle there is another Process). */
  get bound(): boolean {
    return this.proc.alive;
  }

  send(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<void> {
    if (this.proc.silent) return never<void>();
    return this.calls.send(this.proc, dst, msg, opts);
  }

  receive(src: Endpoint, opts?: CallOptions): Promise<Message> {
    if (this.proc.silent) return never<Message>();
    return this.calls.receive(this.proc, src, opts);
  }

  sendrec(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    if (this.proc.silent) return never<Message>();
    return this.calls.sendrec(this.proc, dst, msg, opts);
  }

  receiveRequest(opts?: CallOptions): Promise<Message> {
    if (this.proc.silent) return never<Message>();
    return this.calls.receiveRequest(this.proc, opts);
  }

  reply(dst: Endpoint, msg: OutgoingMessage): Promise<void> {
    if (this.proc.silent) return never<void>();
    return this.calls.reply(this.proc, dst, msg);
  }

  replyAndReceive(dst: Endpoint, msg: OutgoingMessage, opts?: CallOptions): Promise<Message> {
    if (this.proc.silent) return never<Message>();
    return this.calls.replyAndReceive(this.proc, dst, msg, opts);
  }

  notify(dst: Endpoint, opts?: NotifyOptions): Promise<NotifyOutcome> {
    if (this.proc.silent) return never<NotifyOutcome>();
    return this.calls.notify(this.proc, dst, opts);
  }

  grant(buffer: Uint8Array, opts: GrantOptions): number {
    return this.calls.grant(this.proc, buffer, opts);
  }

  revoke(grant: number): void {
    this.calls.revoke(this.proc, grant);
  }

  copyFrom(src: GrantRef, into: Uint8Array, opts?: CopyFromOptions): Promise<number> {
    if (this.proc.silent) return never<number>();
    return this.calls.copyFrom(this.proc, src, into, opts);
  }

  copyTo(dst: GrantRef, data: Uint8Array, opts?: CallOptions): Promise<number> {
    if (this.proc.silent) return never<number>();
    return this.calls.copyTo(this.proc, dst, data, opts);
  }

  copy(src: GrantRef, dst: GrantRef, length: number, opts?: CallOptions): Promise<number> {
    if (this.proc.silent) return never<number>();
    return this.calls.copy(this.proc, src, dst, length, opts);
  }

  /**
   * Its code lets go of the endpoint just before a move drains it (services/service-runner.ts):
   * the receive the drain ends then never settles, nor does any later call or the receive an
   * unbind would end, so the code never sees the move. Only for an incarnation that is done.
   */
  silence(): void {
    this.proc.silent = true;
  }

  unbind(): Promise<void> {
    try {
      if (this.proc.alive) this.calls.unbind(this.proc);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
}
