/**
 * The daemon's events on `node:diagnostics_channel`, so metrics, logs and a dashboard can subscribe
 * without the daemon depending on them (publishing to a channel nobody subscribes to costs nothing).
 * Every message carries `node`, the id of the publishing node.
 */
import { channel } from 'node:diagnostics_channel';

export const DIAGNOSTICS = {
  /** `{ node, peer, state: 'up' | 'suspect' | 'down', incarnation? }`: a peer's link changed state. */
  peer: channel('dvs:peer'),
  /** `{ node, dcid, endpoint, name }`: an endpoint was bound on this node. */
  bind: channel('dvs:bind'),
  /** `{ node, dcid, endpoint }`: an endpoint of this node was unbound. */
  unbind: channel('dvs:unbind'),
  /** `{ node, type: 'joined' | 'changed' | 'left', dcid, nodes }`: this node's view of a DC changed. */
  dc: channel('dvs:dc'),
  /** `{ node, from, kind, code }`: a frame from another node's kernel was refused. */
  frameRefused: channel('dvs:frame-refused'),
  /** `{ node, state, since, attempts, lastError? }`: the node's registration in the directory changed. */
  registration: channel('dvs:registration'),
} as const;

export type DiagnosticsChannelName = (typeof DIAGNOSTICS)[keyof typeof DIAGNOSTICS]['name'];
