/**
 * The far end of the raw baselines, run as its own OS process:
 *   node raw-peer.js echo <unix-path|tcp-port>   echoes length-prefixed frames back
 *   node raw-peer.js sink <tcp-port>             counts frames and bytes; answers a 4-byte count per "report" frame
 *   node raw-peer.js relay <listen> <target>     forwards the bytes of each connection to a connection of its own to
 *                                                <target> and back, untouched (the least a routing process can do)
 * Addresses are a Unix socket path or a TCP port on 127.0.0.1. Prints "ready" on stdout once listening.
 */
import net from 'node:net';

const [mode, where, target] = process.argv.slice(2);
if ((mode !== 'echo' && mode !== 'sink' && mode !== 'relay') || where === undefined || (mode === 'relay' && target === undefined)) {
  console.error('usage: raw-peer echo|sink <unix-path|tcp-port> | relay <listen> <target>');
  process.exit(2);
}

function address(a: string): net.NetConnectOpts {
  const port = Number(a);
  return Number.isInteger(port) ? { host: '127.0.0.1', port } : { path: a };
}

/** Relays one inbound connection to a fresh connection to `target`, both ways. */
function relay(inbound: net.Socket): void {
  inbound.setNoDelay(true);
  const out = net.connect(address(target!));
  out.setNoDelay(true);
  inbound.on('data', (c: Buffer) => void out.write(c));
  out.on('data', (c: Buffer) => void inbound.write(c));
  const close = (): void => {
    inbound.destroy();
    out.destroy();
  };
  for (const s of [inbound, out]) {
    s.on('error', close);
    s.on('close', close);
  }
}

/** Splits a stream into 4-byte-length-prefixed frames. */
function frames(onFrame: (frame: Buffer, socket: net.Socket) => void) {
  return (socket: net.Socket): void => {
    socket.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.byteLength === 0 ? chunk : Buffer.concat([pending, chunk]);
      let off = 0;
      while (pending.byteLength - off >= 4) {
        const len = pending.readUInt32BE(off);
        if (pending.byteLength - off < 4 + len) break;
        onFrame(pending.subarray(off, off + 4 + len), socket);
        off += 4 + len;
      }
      pending = pending.subarray(off);
    });
    socket.on('error', () => socket.destroy());
  };
}

let count = 0;
let bytes = 0;
const server = net.createServer(
  mode === 'relay'
    ? relay
    : mode === 'echo'
    ? frames((frame, socket) => void socket.write(frame))
    : frames((frame, socket) => {
        if (frame.byteLength === 4 + 6 && frame.subarray(4).toString() === 'report') {
          const out = Buffer.alloc(16);
          out.writeUInt32BE(12, 0);
          out.writeUInt32BE(count, 4);
          out.writeDoubleBE(bytes, 8);
          socket.write(out);
          count = 0;
          bytes = 0;
          return;
        }
        count++;
        bytes += frame.byteLength;
      }),
);
const port = Number(where);
if (Number.isInteger(port)) server.listen(port, '127.0.0.1', () => console.log('ready'));
else server.listen(where, () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
