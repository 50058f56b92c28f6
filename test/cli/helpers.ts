/** Helpers of the CLI tests: running the real `dvs` command as an OS process, and a flood of silent connections. */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { FrameDecoder } from '../../src/transport/framing.js';

/** The compiled CLI (vitest's global setup builds dist/). */
export const CLI_MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface CliResult {
  /** The exit code, or undefined if the process was killed (a signal, or the harness's time bound). */
  readonly code: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time from spawn to exit. */
  readonly ms: number;
}

/** Runs `dvs <args>` to completion; kills it after `killAfterMs` (then `code` is undefined). */
export function runCli(args: readonly string[], killAfterMs = 60_000, env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? undefined, stdout, stderr, ms: Date.now() - started });
    });
  });
}

interface FloodSocket {
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  connected: boolean;
  /** The server sent something (its hello). */
  greeted: boolean;
  closed: boolean;
  /** The error code the server gave before closing, if it gave one. */
  closeCode: string | undefined;
}

/**
 * `count` TCP connections to a store server that never say a word: they read what the server sends
 * (its hello, its reason for closing) and hold on until the server closes them or `close()` is called.
 */
export class SilentFlood {
  private readonly conns: FloodSocket[] = [];

  /**
   * Dials in batches, each one dealt with (greeted or closed) before the next: a burst beyond the
   * listen backlog would leave connections waiting for the kernel's SYN-ACK retries for seconds.
   */
  static async open(port: number, count: number, timeoutMs = 30_000, batch = 100): Promise<SilentFlood> {
    const flood = new SilentFlood();
    const deadline = Date.now() + timeoutMs;
    while (flood.conns.length < count) {
      for (let i = 0; i < batch && flood.conns.length < count; i++) flood.dial(port);
      while (!flood.settled) {
        if (Date.now() > deadline) {
          flood.close();
          throw new Error(`the flood was not dealt with within ${timeoutMs} ms`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    return flood;
  }

  /** Whether the server has dealt with every connection: greeted it or closed it. */
  get settled(): boolean {
    return this.conns.every((c) => c.greeted || c.closed);
  }

  /** Connections the server has not closed. */
  get held(): number {
    return this.conns.filter((c) => c.connected && !c.closed).length;
  }

  /** Connections the server closed with this error code. */
  closedWith(code: string): number {
    return this.conns.filter((c) => c.closed && c.closeCode === code).length;
  }

  close(): void {
    for (const c of this.conns) c.socket.destroy();
  }

  private dial(port: number): void {
    const socket = connect({ host: '127.0.0.1', port });
    const c: FloodSocket = { socket, decoder: new FrameDecoder(), connected: false, greeted: false, closed: false, closeCode: undefined };
    this.conns.push(c);
    socket.on('connect', () => (c.connected = true));
    socket.on('data', (chunk: Buffer) => {
      c.greeted = true;
      try {
        for (const f of c.decoder.push(chunk)) {
          const e = (f as { t?: unknown; error?: { code?: unknown } }).error;
          if ((f as { t?: unknown }).t === 'error' && typeof e?.code === 'string') c.closeCode = e.code;
        }
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (c.closed = true));
  }
}
