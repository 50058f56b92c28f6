/**
 * Suite `kernel`: the in-process kernel against a bare promise ping-pong between two async
 * functions, the floor for any rendezvous built on promises; and the framing every daemon and
 * client runs per message (frame decode and encode) against bare msgpack.
 */
import { Packr } from 'msgpackr';
import { ANY } from '../../src/ipc/index.js';
import { Kernel, type Process } from '../../src/kernel/index.js';
import { systemClock } from '../../src/runtime/system-clock.js';
import { createSecretKey, randomBytes } from 'node:crypto';
import { FRAME_TAG_BYTES, FrameOpener, FrameSealer } from '../../src/transport/frame-mac.js';
import { encodeFrame, FRAME_HEADER_BYTES, FrameDecoder } from '../../src/transport/framing.js';
import { promisePingPong } from '../ping-pong.js';
import { compare, latency, latencySamples, opsPerSecond, percentile, throughput, type BenchResult, type Suite } from '../harness.js';

const SUITE = 'kernel';

function echoServer(server: Process): void {
  void (async () => {
    for (;;) {
      let m;
      try {
        m = await server.receiveRequest();
      } catch {
        return; // unbound at the end of the run
      }
      await server.reply(m.source, { type: 1, payload: (m.payload as number) + 1 });
    }
  })();
}

function notifyPeer(me: Process, peer: number): void {
  void (async () => {
    for (;;) {
      try {
        await me.receive(ANY);
        await me.notify(peer);
      } catch {
        return;
      }
    }
  })();
}

/**
 * A process-protocol sendrec request decoded from a fresh buffer per frame (as each socket read
 * is), and its response encoded: our framing against msgpackr alone on the same bodies.
 */
async function framingCases(n: number, rounds: number): Promise<BenchResult[]> {
  const raw = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
  const request = encodeFrame({ op: 'sendrec', id: 123_456, dst: 0x2_0005, type: 7, payload: 42 });
  const body = request.subarray(FRAME_HEADER_BYTES);
  const response = { id: 123_456, ok: true, result: { source: 0x2_0005, type: 7, payload: 43 } };
  const decoder = new FrameDecoder();
  let sink = 0;
  const decodeOurs = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) sink += decoder.push(Buffer.from(request)).length;
  };
  const decodeRaw = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) sink += raw.unpack(Buffer.from(body)) === undefined ? 0 : 1;
  };
  const encodeOurs = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) sink += encodeFrame(response).byteLength;
  };
  const encodeRaw = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) sink += raw.pack(response).byteLength;
  };
  const dec = await compare(rounds, () => opsPerSecond(n, decodeOurs), () => opsPerSecond(n, decodeRaw));
  const enc = await compare(rounds, () => opsPerSecond(n, encodeOurs), () => opsPerSecond(n, encodeRaw));
  if (sink === 0) throw new Error('framing cases did no work');
  const note = { iterations: n, rounds, baselineIs: 'msgpackr pack/unpack of the same body' };
  // A link frame sealed and verified (cluster-key mode, link-protocol.md "Frame integrity")
  // against the same frame encoded and decoded alone: what integrity adds to every link frame.
  const key = createSecretKey(randomBytes(32));
  const sealer = new FrameSealer(key);
  const opener = new FrameOpener(key);
  const linkFrame = { t: 'data', s: 1, a: 1, f: [[1, 1, 42, 0x2_0005, 0x2_0006, 7, { n: 1 }, true]] };
  const linkDecoder = new FrameDecoder();
  const plainOnce = (): Buffer => {
    const wire = encodeFrame(linkFrame);
    sink += linkDecoder.push(wire).length;
    return wire;
  };
  const plainLoop = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) plainOnce();
  };
  const sealedLoop = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      const wire = Buffer.concat([plainOnce(), Buffer.alloc(FRAME_TAG_BYTES)]);
      sealer.seal(wire);
      opener.begin();
      opener.update(wire.subarray(0, wire.byteLength - FRAME_TAG_BYTES));
      if (opener.verify(wire.subarray(wire.byteLength - FRAME_TAG_BYTES))) sink++;
    }
  };
  const mac = await compare(rounds, () => opsPerSecond(n, sealedLoop), () => opsPerSecond(n, plainLoop));
  return [
    throughput(SUITE, 'link frame: encode, seal, verify, decode vs encode, decode', mac.ours, mac.base, { iterations: n, rounds, baselineIs: 'the same link frame encoded and decoded without its integrity tag' }),
    throughput(SUITE, 'framing: decode a request frame from a fresh read', dec.ours, dec.base, note),
    throughput(SUITE, 'framing: encode a response frame', enc.ours, enc.base, note),
  ];
}

export const kernelSuite: Suite = {
  name: SUITE,
  description: 'in-process sendrec and notify->receive against a bare promise ping-pong; frame decode/encode against bare msgpack',
  async run({ scale }): Promise<BenchResult[]> {
    const n = Math.max(1000, Math.round(200_000 * scale));
    const rounds = 5;
    const kernel = new Kernel({ nodeId: 0, clock: systemClock });
    kernel.createDc({ dcid: 0 });
    const server = kernel.bind(0, { slot: 0, name: 'echo' });
    const client = kernel.bind(0, { name: 'client' });
    echoServer(server);
    const a = kernel.bind(0, { slot: 1, name: 'notifier-a' });
    const b = kernel.bind(0, { slot: 2, name: 'notifier-b' });
    notifyPeer(b, a.endpoint);
    await Promise.resolve();
    const pp = promisePingPong();
    await pp.call(0);

    const msg = { type: 7, payload: 1 };
    const sendrecLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await client.sendrec(0, msg);
    };
    const pingLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await pp.call(i);
    };
    // One notify->receive each way per iteration: a notifies b, b receives and notifies a, a receives.
    const notifyLoop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) {
        await a.notify(b.endpoint);
        await a.receive(ANY);
      }
    };

    const sr = await compare(rounds, () => opsPerSecond(n, sendrecLoop), () => opsPerSecond(n, pingLoop));
    const nt = await compare(rounds, () => opsPerSecond(n, notifyLoop), () => opsPerSecond(n, pingLoop));
    const srLat = await latencySamples(n, () => client.sendrec(0, msg));
    const ppLat = await latencySamples(n, () => pp.call(1));
    const ntLat = await latencySamples(n, async () => {
      await a.notify(b.endpoint);
      await a.receive(ANY);
    });

    pp.stop();
    kernel.shutdown();
    const framing = await framingCases(n * 5, rounds);
    const note = { iterations: n, rounds };
    return [
      throughput(SUITE, 'sendrec round trip', sr.ours, sr.base, note),
      latency(SUITE, 'sendrec p50', percentile(srLat, 50), percentile(ppLat, 50)),
      latency(SUITE, 'sendrec p99', percentile(srLat, 99), percentile(ppLat, 99)),
      // A notify round is two notify->receive hops; report per hop.
      throughput(SUITE, 'notify->receive', nt.ours * 2, nt.base * 2, note),
      latency(SUITE, 'notify->receive p50', percentile(ntLat, 50) / 2, percentile(ppLat, 50) / 2),
      latency(SUITE, 'notify->receive p99', percentile(ntLat, 99) / 2, percentile(ppLat, 99) / 2),
      ...framing,
    ];
  },
};
