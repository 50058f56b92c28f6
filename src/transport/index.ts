/** Layer 3: codec, framing and node links. See docs/link-protocol.md. */
export { decodeValue, encodeValue, encodeValueView } from './codec.js';
export { compress, decompress } from './compress.js';
export { DEFAULT_MAX_FRAME_BYTES, encodeFrame, encodeFrameSegments, frameFromBody, FLAG_LZ4, FRAME_HEADER_BYTES, FrameDecoder, SEGMENT_MIN_BYTES, WIRE_VERSION, type FramingOptions } from './framing.js';
export {
  handshakeMac,
  handshakeMacInput,
  handshakeParams,
  LINK_PROTOCOL_VERSION,
  MAC_BYTES,
  MAX_KERNEL_VERSION,
  MAX_NODE_ID,
  newNonce,
  NONCE_BYTES,
  ROLE_ACCEPTOR,
  ROLE_DIALER,
  verifyHandshakeMac,
  type HandshakeParams,
  type HandshakeSide,
} from './auth.js';
export { deriveFrameKeys, FRAME_TAG_BYTES, FrameOpener, frameKeyBytes, frameKeyInfo, FrameSealer, type FrameKeys } from './frame-mac.js';
export {
  parseKernelFrame,
  parseLinkFrame,
  type AckFrame,
  type AuthFrame,
  type DataFrame,
  type HandshakeFrame,
  type HelloFrame,
  type LinkFrame,
  type PingFrame,
  type ReadyFrame,
  type SessionToken,
  type WelcomeFrame,
} from './frame-schema.js';
export { BULK_MIN_BYTES, encodeDataFrame, encodedBytes, encodeKernelFrame, encodeLinkFrame, encodeSendAcks, flattenWire, wireBytes, type EncodedFrame, type Wire } from './link-wire.js';
export { encodeWireArray, KIND, kernelFrameToWire, MAX_GROUPED_ACKS } from './kernel-wire.js';
export type { PeerLinkStats, PeerState } from './link-stats.js';
export {
  DEFAULT_LINK_TIMING,
  LinkManager,
  type LinkLogger,
  type LinkManagerOptions,
  type LinkManagerStats,
  type LinkTiming,
  type LinkTlsOptions,
  type PeerAddress,
  type PeerReport,
} from './link-manager.js';
export { certNodeIds, checkPeerNode } from './tls-identity.js';
