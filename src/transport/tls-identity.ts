/**
 * Which node a link certificate speaks for. In mutual-TLS mode the chain proves a certificate comes
 * from the cluster CA; this proves it was issued to the node id the peer claims, so one node's key
 * cannot impersonate another (Kubernetes names its node certificates the same way, by subject).
 * A certificate names node N by its subject CN `dvs-node-N`, or by a subjectAltName `URI:dvs://node/N`.
 * See docs/link-protocol.md ("Handshake").
 */
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { DvsError } from '../ipc/errors.js';

const CN_PREFIX = 'dvs-node-';
const URI_PREFIX = 'URI:dvs://node/';
const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;

function nodeIdOf(text: string, prefix: string): number | undefined {
  if (!text.startsWith(prefix)) return undefined;
  const digits = text.slice(prefix.length);
  return DECIMAL.test(digits) ? Number(digits) : undefined;
}

/** The node ids a certificate names (usually one; none for a certificate not issued to a node). */
export function certNodeIds(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'>): number[] {
  const ids = new Set<number>();
  const cn: unknown = cert.subject?.CN;
  for (const name of Array.isArray(cn) ? cn : [cn]) {
    const id = typeof name === 'string' ? nodeIdOf(name, CN_PREFIX) : undefined;
    if (id !== undefined) ids.add(id);
  }
  // Node lists the names as "TYPE:value, TYPE:value"; a value with a comma would be quoted, and
  // a quoted entry never matches the unquoted prefix.
  for (const entry of (cert.subjectaltname ?? '').split(', ')) {
    const id = nodeIdOf(entry, URI_PREFIX);
    if (id !== undefined) ids.add(id);
  }
  return [...ids];
}

/** Throws EDVSACCES unless the peer's (already CA-verified) certificate names `node`. */
export function checkPeerNode(socket: TLSSocket, node: number): void {
  const cert = socket.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0) throw new DvsError('EDVSACCES', 'the peer presented no certificate');
  const named = certNodeIds(cert);
  if (!named.includes(node)) {
    const names = named.length === 0 ? 'no node' : `node ${named.join(', ')}`;
    throw new DvsError('EDVSACCES', `the peer claims node ${node} but its certificate names ${names}`, { details: { node, named } });
  }
}
