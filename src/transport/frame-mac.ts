/**
 * Integrity of every frame after the handshake, in cluster-key mode: each direction of a
 * connection has its own key, derived from the cluster key and both handshake nonces (HKDF-SHA256),
 * and every frame it carries is followed by a 16-byte tag: AES-256-GCM used as a MAC (GMAC) over
 * the frame's bytes, with the frame's number in that direction (an implicit counter from 0) as the
 * IV. A tampered, replayed, reordered, dropped or injected frame fails verification.
 * See docs/link-protocol.md ("Frame integrity").
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type DecipherGCM, type KeyObject } from 'node:crypto';
import { LINK_IDENTITY_BYTES, NONCE_BYTES, ROLE_ACCEPTOR, ROLE_DIALER, writeLinkIdentity, type HandshakeParams } from './auth.js';
import type { Wire } from './link-wire.js';

/** Bytes of the tag that follows each sealed frame. */
export const FRAME_TAG_BYTES = 16;

const CIPHER = 'aes-256-gcm';
const KEY_LABEL = Buffer.from('dvs-link-frames', 'ascii');

/**
 * The HKDF `info` of the key for frames sent by `role` (49 bytes):
 * `"dvs-link-frames" | version:u8 | role:u8 | dialerNode:u32be | acceptorNode:u32be |
 * dialerIncarnation:u64be | acceptorIncarnation:u64be | dialerKernelVersion:u32be | acceptorKernelVersion:u32be`.
 */
export function frameKeyInfo(role: number, p: HandshakeParams): Buffer {
  const out = Buffer.alloc(KEY_LABEL.byteLength + 2 + LINK_IDENTITY_BYTES);
  let at = KEY_LABEL.copy(out, 0);
  out[at++] = p.version;
  out[at++] = role;
  writeLinkIdentity(out, at, p);
  return out;
}

/** The 32 key bytes for frames sent by `role`: HKDF-SHA256(clusterKey, salt = dialerNonce | acceptorNonce, info). */
export function frameKeyBytes(clusterKey: Uint8Array, role: number, p: HandshakeParams): Buffer {
  if (p.dialerNonce.byteLength !== NONCE_BYTES || p.acceptorNonce.byteLength !== NONCE_BYTES) throw new RangeError(`nonces must be ${NONCE_BYTES} bytes`);
  const salt = Buffer.concat([p.dialerNonce, p.acceptorNonce]);
  return Buffer.from(hkdfSync('sha256', clusterKey, salt, frameKeyInfo(role, p), 32));
}

/** The keys of one connection, from one side's point of view. */
export interface FrameKeys {
  readonly send: KeyObject;
  readonly receive: KeyObject;
}

/** The frame keys of a connection for the side in `myRole` (ROLE_DIALER or ROLE_ACCEPTOR). */
export function deriveFrameKeys(clusterKey: Uint8Array, myRole: number, p: HandshakeParams): FrameKeys {
  const other = myRole === ROLE_DIALER ? ROLE_ACCEPTOR : ROLE_DIALER;
  return { send: createSecretKey(frameKeyBytes(clusterKey, myRole, p)), receive: createSecretKey(frameKeyBytes(clusterKey, other, p)) };
}

/** IV of frame number `n`: four zero bytes, then n as a u64 big-endian. */
function writeIv(iv: Buffer, n: number): void {
  iv.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 4);
  iv.writeUInt32BE(n >>> 0, 8);
}

/** Seals the frames one side sends on one connection, in order. */
export class FrameSealer {
  private count = 0;
  private readonly iv = Buffer.alloc(12);

  constructor(private readonly key: KeyObject) {}

  /**
   * Writes the tag of the next frame into the last FRAME_TAG_BYTES of `wire` (the room the encoder
   * left after the frame): the tag covers every byte before them.
   */
  seal(wire: Wire): void {
    writeIv(this.iv, this.count++);
    const mac = createCipheriv(CIPHER, this.key, this.iv);
    let last: Buffer;
    if (Buffer.isBuffer(wire)) last = wire;
    else {
      const n = wire.length - 1;
      for (let i = 0; i < n; i++) mac.setAAD(wire[i]!);
      last = wire[n]!;
    }
    const end = last.byteLength - FRAME_TAG_BYTES;
    mac.setAAD(last.subarray(0, end));
    mac.final();
    mac.getAuthTag().copy(last, end);
  }
}

/** Verifies the frames one side receives on one connection, in order, fed as their bytes arrive. */
export class FrameOpener {
  private count = 0;
  private readonly iv = Buffer.alloc(12);
  private mac: DecipherGCM | undefined;

  constructor(private readonly key: KeyObject) {}

  /** The next frame begins. */
  begin(): void {
    writeIv(this.iv, this.count++);
    this.mac = createDecipheriv(CIPHER, this.key, this.iv);
  }

  /** More bytes of the current frame. */
  update(bytes: Buffer): void {
    this.mac?.setAAD(bytes);
  }

  /** Whether `tag` is the current frame's (constant time, inside OpenSSL). */
  verify(tag: Buffer): boolean {
    const mac = this.mac;
    this.mac = undefined;
    if (mac === undefined) return false;
    mac.setAuthTag(tag);
    try {
      mac.final();
      return true;
    } catch {
      return false;
    }
  }
}
