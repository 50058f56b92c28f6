/** How a link certificate names its node (src/transport/tls-identity.ts), on parsed certificate fields. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { certNodeIds } from '../../src/transport/index.js';

const pem = (name: string): Buffer => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url));

describe('certNodeIds', () => {
  it('reads the subject CN dvs-node-N', () => {
    expect(certNodeIds({ subject: { CN: 'dvs-node-7' } as never, subjectaltname: '' })).toEqual([7]);
    expect(certNodeIds({ subject: { CN: 'dvs-node-0' } as never, subjectaltname: '' })).toEqual([0]);
  });

  it('reads a subjectAltName URI dvs://node/N among other names', () => {
    expect(certNodeIds({ subject: { CN: 'box' } as never, subjectaltname: 'DNS:box.example, URI:dvs://node/12, IP Address:10.0.0.1' })).toEqual([12]);
  });

  it('names nothing for other CNs, other URIs, leading zeros, signs, suffixes or quoted entries', () => {
    for (const cn of ['node-1', 'dvs-node-', 'dvs-node-01', 'dvs-node-+1', 'dvs-node-1x', 'dvs-node-1 ', 'DVS-NODE-1', 'dvs-node-12345678901']) {
      expect(certNodeIds({ subject: { CN: cn } as never, subjectaltname: '' })).toEqual([]);
    }
    expect(certNodeIds({ subject: {} as never, subjectaltname: 'URI:dvs://node/1/x, URI:https://node/1, DNS:dvs-node-1, URI:"dvs://node/1, x"' })).toEqual([]);
    expect(certNodeIds({ subject: undefined as never, subjectaltname: undefined as never })).toEqual([]);
  });

  it('reads every CN when the subject has several', () => {
    expect(certNodeIds({ subject: { CN: ['dvs-node-2', 'other', 'dvs-node-4'] } as never, subjectaltname: '' }).sort()).toEqual([2, 4]);
  });

  it('matches the test fixtures as issued', () => {
    const names = (file: string): number[] => {
      const x = new X509Certificate(pem(file));
      const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1];
      return certNodeIds({ subject: { CN: cn } as never, subjectaltname: x.subjectAltName ?? '' });
    };
    expect(names('node-1.pem')).toEqual([1]);
    expect(names('node-2.pem')).toEqual([2]);
    expect(names('node-3.pem')).toEqual([3]);
    expect(names('ca.pem')).toEqual([]);
  });
});
