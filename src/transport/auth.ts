/**
 * Node-link authentication with the cluster key: both sides prove knowledge of the key with an
 * HMAC-SHA256 over both fresh nonces, both node ids, both incarnations, both kernel protocol
 * versions and the link protocol version.
 * The two proofs differ by a role byte, so a proof can never be reflected back to its author.
 * See docs/link-protocol.md ("Handshake").
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DvsError } from '../ipc/errors.js';

/** Version of the link protocol (handshake and link frames), independent of the framing version. */
export const LINK_PROTOCOL_VERSION = 5;
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
/** Highest node id a link can name (it travels as a u32 in the MAC input). */
export const MAX_NODE_ID = 0xffff_ffff;
/** Highest kernel protocol version (a u32 in the MAC input). */
export const MAX_KERNEL_VERSION = 0xffff_ffff;

const LABEL = Buffer.from('dvs-link', 'ascii');
/** Role byte of the proof the acceptor sends (in `welcome`). */
export const ROLE_ACCEPTOR = 0x41; // 'A'
/** Role byte of the proof the dialer sends (in `auth`). */
export const ROLE_DIALER = 0x44; // 'D'

export interface HandshakeParams {
  readonly version: number;
  readonly dialerNonce: Uint8Array;
  readonly acceptorNonce: Uint8Array;
  readonly dialerNode: number;
  readonly acceptorNode: number;
  readonly dialerIncarnation: number;
  readonly acceptorIncarnation: number;
  /** The kernel protocol versions the two sides speak (LinkManagerOptions.kernelVersion). */
  readonly dialerKernelVersion: number;
  readonly acceptorKernelVersion: number;
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

/**
 * The exact bytes the MAC covers (106 bytes):
 * `"dvs-link" | version:u8 | role:u8 | dialerNonce[32] | acceptorNonce[32] | dialerNode:u32be |
 * acceptorNode:u32be | dialerIncarnation:u64be | acceptorIncarnation:u64be |
 * dialerKernelVersion:u32be | acceptorKernelVersion:u32be`.
 */
export function handshakeMacInput(role: number, p: HandshakeParams): Buffer {
  if (p.dialerNonce.byteLength !== NONCE_BYTES || p.acceptorNonce.byteLength !== NONCE_BYTES) {
    throw new RangeError(`nonces must be ${NONCE_BYTES} bytes`);
  }
  const out = Buffer.alloc(LABEL.byteLength + 2 + 2 * NONCE_BYTES + LINK_IDENTITY_BYTES);
  let at = LABEL.copy(out, 0);
  out[at++] = p.version;
  out[at++] = role;
  out.set(p.dialerNonce, at);
  at += NONCE_BYTES;
  out.set(p.acceptorNonce, at);
  at += NONCE_BYTES;
  writeLinkIdentity(out, at, p);
  return out;
}

/** Bytes of the two sides' identity (`writeLinkIdentity`). */
export const LINK_IDENTITY_BYTES = 32;

/**
 * Writes the two sides' identity at `at`, as both the handshake proof and the frame keys cover it:
 * `dialerNode:u32be | acceptorNode:u32be | dialerIncarnation:u64be | acceptorIncarnation:u64be |
 * dialerKernelVersion:u32be | acceptorKernelVersion:u32be`.
 */
export function writeLinkIdentity(out: Buffer, at: number, p: HandshakeParams): number {
  at = out.writeUInt32BE(p.dialerNode, at);
  at = out.writeUInt32BE(p.acceptorNode, at);
  at = out.writeBigUInt64BE(BigInt(p.dialerIncarnation), at);
  at = out.writeBigUInt64BE(BigInt(p.acceptorIncarnation), at);
  at = out.writeUInt32BE(p.dialerKernelVersion, at);
  return out.writeUInt32BE(p.acceptorKernelVersion, at);
}

export function handshakeMac(key: Uint8Array, role: number, p: HandshakeParams): Buffer {
  return createHmac('sha256', key).update(handshakeMacInput(role, p)).digest();
}

/** Constant-time check of a received proof; false for a proof of the wrong length. */
export function verifyHandshakeMac(key: Uint8Array, role: number, p: HandshakeParams, mac: Uint8Array): boolean {
  const expected = handshakeMac(key, role, p);
  if (mac.byteLength !== expected.byteLength) return false;
  return timingSafeEqual(expected, mac);
}

/** One side of a connection, as the handshake names it. */
export interface HandshakeSide {
  readonly nonce: Uint8Array;
  readonly node: number;
  readonly inc: number;
  /** Kernel protocol version. */
  readonly kv: number;
}

/** The handshake parameters of one connection, from its two sides. */
export function handshakeParams(dialer: HandshakeSide, acceptor: HandshakeSide): HandshakeParams {
  return {
    version: LINK_PROTOCOL_VERSION,
    dialerNonce: dialer.nonce,
    acceptorNonce: acceptor.nonce,
    dialerNode: dialer.node,
    acceptorNode: acceptor.node,
    dialerIncarnation: dialer.inc,
    acceptorIncarnation: acceptor.inc,
    dialerKernelVersion: dialer.kv,
    acceptorKernelVersion: acceptor.kv,
  };
}

/** A node's proofs in the handshake: made and checked with its cluster key, or empty without one (certificate-only mode). */
export class HandshakeProofs {
  readonly key: Buffer | undefined;

  constructor(key: Uint8Array | undefined) {
    this.key = key === undefined ? undefined : Buffer.from(key);
  }

  /** This node's proof in `role` (empty without a key). */
  make(role: number, p: HandshakeParams): Buffer {
    return this.key === undefined ? Buffer.alloc(0) : handshakeMac(this.key, role, p);
  }

  /** Throws EDVSACCES unless `mac` is the peer's valid proof in `role` (or, without a key, empty). */
  check(role: number, p: HandshakeParams, mac: Uint8Array): void {
    if (this.key === undefined) {
      if (mac.byteLength !== 0) throw new DvsError('EDVSACCES', 'peer sent a MAC but this node has no cluster key');
      return;
    }
    if (!verifyHandshakeMac(this.key, role, p, mac)) throw new DvsError('EDVSACCES', 'handshake MAC does not verify');
  }
}
