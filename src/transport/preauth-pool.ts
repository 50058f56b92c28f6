/**
 * The inbound connections of a node's links that have not authenticated yet, and the policy that
 * keeps a flood of them from shutting real peers out (docs/link-protocol.md, "Before
 * authentication"):
 * - a connection must deliver its first frame (hello) within helloMs of being accepted;
 * - silent connections (no hello yet) share `maxSilent` slots; when they are all taken, the
 *   oldest silent one is evicted, so a newcomer always gets its chance;
 * - from an address that is no peer's, at most PER_ADDRESS_SILENT silent connections at a time;
 *   more are refused;
 * - once a well-formed hello names a known peer, the connection leaves the shared slots for that
 *   peer's own budget of PER_PEER_PENDING handshakes, where the newest wins.
 */
import type net from 'node:net';
import type { Clock, TimerHandle } from '../kernel/clock.js';
import type { ConnEnd } from './link-conn.js';

/** Handshakes in progress per claimed peer; a newer one evicts the oldest. */
export const PER_PEER_PENDING = 2;
/** Silent connections at a time from one address that is no peer's. */
export const PER_ADDRESS_SILENT = 8;

/** One inbound connection before authentication. */
export interface PreAuthSlot {
  /** The accepted TCP socket (under TLS, the one the TLS socket wraps). */
  readonly socket: net.Socket;
  readonly address: string;
  /** The listed peer its hello named, once it did (counted under it, checked or not). */
  named?: number;
  /** The node its hello named, once the hello passed its checks (see claim). */
  claimed: number | undefined;
  /** Set once the slot left the pool (established, ended, evicted). */
  settled: boolean;
  /** A link connection runs its handshake (under TLS: the TLS handshake is through). */
  handshaking: boolean;
  /** Ends the connection on the pool's behalf ('evicted' or 'timeout'). */
  end: (why: ConnEnd) => void;
  helloTimer: TimerHandle | undefined;
  /** Why its TLS handshake failed, if it did. */
  tlsError?: unknown;
}

export interface PreAuthPoolOptions {
  readonly maxSilent: number;
  readonly helloMs: number;
  readonly clock: Clock;
  /** Whether `address` is a known peer's (its host as listed, as the socket reports it). */
  readonly isPeerAddress: (address: string) => boolean;
}

/** An IPv4 peer seen through a dual-stack socket is reported as ::ffff:a.b.c.d. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class PreAuthPool {
  /** Silent slots, oldest first (a Set iterates in insertion order). */
  private readonly silent = new Set<PreAuthSlot>();
  private readonly silentByAddress = new Map<string, number>();
  private readonly claims = new Map<number, PreAuthSlot[]>();
  private claimedCount = 0;

  constructor(private readonly opts: PreAuthPoolOptions) {}

  /** Connections before authentication, silent and claimed. */
  get size(): number {
    return this.silent.size + this.claimedCount;
  }

  /**
   * Admits a new connection (the caller fills in `end`), evicting the oldest silent one if the
   * pool is full; undefined when its address already has its share of silent connections.
   */
  admit(socket: net.Socket): PreAuthSlot | undefined {
    const address = plainAddress(socket.remoteAddress);
    const fromAddress = this.silentByAddress.get(address) ?? 0;
    if (fromAddress >= PER_ADDRESS_SILENT && !this.opts.isPeerAddress(address)) return undefined;
    if (this.silent.size >= this.opts.maxSilent) {
      const oldest = this.silent.values().next().value;
      if (oldest !== undefined) this.evict(oldest, 'evicted');
    }
    const slot: PreAuthSlot = { socket, address, claimed: undefined, settled: false, handshaking: false, end: () => {}, helloTimer: undefined };
    this.silent.add(slot);
    this.silentByAddress.set(address, fromAddress + 1);
    slot.helloTimer = this.opts.clock.setTimer(this.opts.helloMs, () => {
      slot.helloTimer = undefined;
      if (slot.claimed === undefined) this.evict(slot, 'timeout');
    });
    return slot;
  }

  /** A well-formed hello named `node`, a peer: the slot moves to that peer's budget, where the newest wins. */
  claim(slot: PreAuthSlot, node: number): void {
    if (slot.settled || slot.claimed !== undefined) return;
    this.leaveSilent(slot);
    if (slot.helloTimer !== undefined) this.opts.clock.clearTimer(slot.helloTimer);
    slot.helloTimer = undefined;
    slot.claimed = node;
    let list = this.claims.get(node);
    if (list === undefined) this.claims.set(node, (list = []));
    list.push(slot);
    this.claimedCount++;
    while (list.length > PER_PEER_PENDING) {
      const oldest = list[0];
      if (oldest === undefined) break;
      this.evict(oldest, 'evicted');
    }
  }

  /** The slot left the pool: established, or its connection ended. Idempotent. */
  settle(slot: PreAuthSlot): void {
    if (slot.settled) return;
    slot.settled = true;
    if (slot.helloTimer !== undefined) this.opts.clock.clearTimer(slot.helloTimer);
    slot.helloTimer = undefined;
    if (slot.claimed === undefined) {
      this.leaveSilent(slot);
      return;
    }
    const list = this.claims.get(slot.claimed);
    const at = list?.indexOf(slot) ?? -1;
    if (list === undefined || at < 0) return;
    list.splice(at, 1);
    this.claimedCount--;
    if (list.length === 0) this.claims.delete(slot.claimed);
  }

  /** Ends every connection in the pool. */
  closeAll(): void {
    for (const slot of [...this.silent, ...[...this.claims.values()].flat()]) this.evict(slot, 'shutdown');
  }

  private evict(slot: PreAuthSlot, why: ConnEnd): void {
    if (slot.settled) return;
    this.settle(slot);
    slot.end(why);
  }

  private leaveSilent(slot: PreAuthSlot): void {
    if (!this.silent.delete(slot)) return;
    const n = (this.silentByAddress.get(slot.address) ?? 1) - 1;
    if (n <= 0) this.silentByAddress.delete(slot.address);
    else this.silentByAddress.set(slot.address, n);
  }
}
