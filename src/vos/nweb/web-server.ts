/**
 * NWEB's HTTP/1.1 server (docs/vos/nweb.md): a distributed container's files, reached through
 * `WebFiles`, served on a real TCP port. node:http (llhttp) parses; this file is the policy: which
 * requests are answered how, how few WebFiles calls each costs, and how a slow, stalled or vanished
 * client is cut off without holding up anyone else. Bodies always carry Content-Length (never
 * chunked) and big files go out in chunks, one read ahead of the socket, paced by its backpressure.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { DvsError, isDvsError } from '../../ipc/errors.js';
import { evaluatePreconditions, etagOf, lastModifiedOf } from './conditional.js';
import { contentTypeFor } from './content-types.js';
import { renderDirIndex } from './dir-index.js';
import { SmallFileCache } from './file-cache.js';
import { DEFAULT_MAX_URL_LENGTH, parseTarget, sitePathToUrl } from './http-paths.js';
import { contentRange, decideRange, DEFAULT_MAX_RANGES, ifRangeHolds, type ByteSpan, type RangeDecision } from './ranges.js';
import type { WebFiles, WebStat } from './web-files.js';

export interface WebServerOptions {
  /** Time to receive a request's headers (a slowloris gets 408 and is closed). */
  readonly headersTimeoutMs?: number;
  /** Time to receive a whole request, body included; not less than headersTimeoutMs. */
  readonly requestTimeoutMs?: number;
  /** How long an idle keep-alive connection is kept. */
  readonly keepAliveTimeoutMs?: number;
  /** A response write that makes no progress for this long destroys the socket. */
  readonly writeStallTimeoutMs?: number;
  /** Connections beyond this are dropped at accept. */
  readonly maxConnections?: number;
  /** Request line plus headers, in bytes; above it, 431. */
  readonly maxHeaderSize?: number;
  /** Request-target length; above it, 414 (keep it below maxHeaderSize). */
  readonly maxUrlLength?: number;
  /** A request body above this gets 413 (NWEB takes no uploads). */
  readonly maxBodyBytes?: number;
  /** More ranges than this in one Range are ignored (the whole file is sent). */
  readonly maxRanges?: number;
  /** Bytes per WebFiles.read of a big file. */
  readonly chunkSize?: number;
  /** Files up to this size are cached (0: no cache); at most chunkSize. */
  readonly cacheMaxFileBytes?: number;
  /** The cache's total bytes. */
  readonly cacheMaxBytes?: number;
  /** The file a directory URL serves when present. */
  readonly indexFile?: string;
  /** A WebFiles call not settled in this long fails the request with 504 (or cuts its body). */
  readonly filesTimeoutMs?: number;
}

export interface WebServerStats {
  /** Requests that reached the handler (llhttp's refusals are not requests, only errors). */
  readonly requests: number;
  /** 4xx and 5xx answers, requests llhttp refused, and bodies cut short by the server. */
  readonly errors: number;
  /** Of those, 5xx answers and bodies cut short by a WebFiles failure. */
  readonly serverErrors: number;
  readonly openConnections: number;
  /** Body bytes of files and listings handed to sockets (multipart framing included, error texts not). */
  readonly bytes: number;
  /** Connections refused at accept because maxConnections were open. */
  readonly droppedConnections: number;
  /** Sockets destroyed because a write made no progress for writeStallTimeoutMs. */
  readonly stalledSockets: number;
  /** Requests answered from the small-file cache. */
  readonly cacheHits: number;
}

const DEFAULTS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  writeStallTimeoutMs: 30_000,
  maxConnections: 512,
  maxHeaderSize: 16 * 1024,
  maxUrlLength: DEFAULT_MAX_URL_LENGTH,
  maxBodyBytes: 1024,
  maxRanges: DEFAULT_MAX_RANGES,
  chunkSize: 256 * 1024,
  cacheMaxFileBytes: 64 * 1024,
  cacheMaxBytes: 16 * 1024 * 1024,
  indexFile: 'index.html',
  filesTimeoutMs: 30_000,
} satisfies Required<WebServerOptions>;

/** Writes are handed to the socket in slices this big, so a slow reader's progress is visible slice by slice. */
const WRITE_SLICE = 16 * 1024;

/** A piece of a response body: literal bytes (multipart framing) or a span of the file. */
type BodyPiece = Uint8Array | ByteSpan;

type ReadResult = { readonly ok: true; readonly bytes: Uint8Array } | { readonly ok: false; readonly error: unknown };

function statusBody(status: number): string {
  return `${status} ${http.STATUS_CODES[status] ?? 'Error'}\n`;
}

/** An error response written straight to a socket (llhttp refused the request: there is no `res`). */
function rawErrorResponse(status: number): string {
  const body = statusBody(status);
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** The status for an error llhttp (or node:http) raised before a request existed. */
function clientErrorStatus(code: string | undefined): number {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 408;
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 413;
    default:
      return 400;
  }
}

export class WebServer {
  private readonly opts: Required<WebServerOptions>;
  private readonly server: http.Server;
  private readonly cache: SmallFileCache;
  private readonly sockets = new Set<Socket>();
  /** Responses not yet closed per socket: a clientError must not write into the middle of one. */
  private readonly responding = new WeakMap<Socket, Set<http.ServerResponse>>();
  private counters = { requests: 0, errors: 0, serverErrors: 0, bytes: 0, droppedConnections: 0, stalledSockets: 0, cacheHits: 0 };
  private listening = false;

  constructor(private readonly files: WebFiles, opts: WebServerOptions = {}) {
    const o: Required<WebServerOptions> = { ...DEFAULTS, ...opts };
    for (const key of ['headersTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'writeStallTimeoutMs', 'maxConnections', 'maxHeaderSize', 'maxUrlLength', 'maxRanges', 'chunkSize', 'filesTimeoutMs'] as const) {
      if (!Number.isInteger(o[key]) || o[key] <= 0) throw new DvsError('EDVSINVAL', `WebServer option ${key} must be a positive integer`, { details: { [key]: o[key] } });
    }
    for (const key of ['maxBodyBytes', 'cacheMaxFileBytes', 'cacheMaxBytes'] as const) {
      if (!Number.isInteger(o[key]) || o[key] < 0) throw new DvsError('EDVSINVAL', `WebServer option ${key} must be a non-negative integer`, { details: { [key]: o[key] } });
    }
    if (o.headersTimeoutMs > o.requestTimeoutMs) throw new DvsError('EDVSINVAL', 'headersTimeoutMs must not exceed requestTimeoutMs');
    if (o.cacheMaxFileBytes > o.chunkSize) throw new DvsError('EDVSINVAL', 'cacheMaxFileBytes must not exceed chunkSize (a cached file is read in one call)');
    if (o.indexFile === '' || o.indexFile.includes('/')) throw new DvsError('EDVSINVAL', 'indexFile must be a plain file name');
    this.opts = o;
    this.cache = new SmallFileCache(o.cacheMaxFileBytes, o.cacheMaxBytes);
    this.server = http.createServer({
      maxHeaderSize: o.maxHeaderSize,
      headersTimeout: o.headersTimeoutMs,
      requestTimeout: o.requestTimeoutMs,
      // node:http sweeps for expired header/request timers at this interval; a quarter of the
      // shorter timeout keeps the overshoot small.
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(o.headersTimeoutMs / 4))),
      // Checked here, so the 400 has the same short body as every other error.
      requireHostHeader: false,
      noDelay: true,
    });
    this.server.keepAliveTimeout = o.keepAliveTimeoutMs;
    this.server.maxConnections = o.maxConnections;
    // No socket inactivity timeout of node's own: the timeouts above and the write-stall check cover it.
    this.server.timeout = 0;
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server.on('drop', () => this.counters.droppedConnections++);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
  }

  /** Start listening; resolves with the port (useful with port 0). */
  async listen(port = 0, host = '127.0.0.1'): Promise<number> {
    if (this.listening) throw new DvsError('EDVSBUSY', 'WebServer already listening');
    this.listening = true;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.listening = false;
        reject(new DvsError('EDVSADDRINUSE', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  /** Stop accepting and end every connection, idle or mid-response. */
  async close(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  stats(): WebServerStats {
    return { ...this.counters, openConnections: this.sockets.size };
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const responses = [...(this.responding.get(socket) ?? [])];
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable || responses.some((r) => !r.writableEnded)) {
      // Gone, or in the middle of a response: nothing can be said cleanly.
      socket.destroy();
      return;
    }
    this.counters.errors++;
    // Flushed then closed; a client that will not take even this is cut off by the stall timeout.
    const timer = setTimeout(() => socket.destroy(), this.opts.writeStallTimeoutMs);
    timer.unref();
    const close = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    // A request already answered (e.g. refused as it arrived) keeps its answer; otherwise say why.
    if (responses.length > 0) socket.end(close);
    else socket.end(rawErrorResponse(clientErrorStatus(err.code)), close);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.counters.requests++;
    const socket = req.socket;
    let open = this.responding.get(socket);
    if (open === undefined) this.responding.set(socket, (open = new Set()));
    open.add(res);
    res.once('close', () => open.delete(res));
    // A write racing the client's disconnect is expected, not a crash: the 'close' path handles it.
    res.on('error', () => undefined);
    this.handle(req, res).catch((err: unknown) => this.failed(res, err));
  }

  /** A WebFiles failure: 500 if nothing was sent yet, else the body is cut (the client sees a short body). */
  private failed(res: http.ServerResponse, err: unknown): void {
    if (!res.headersSent && !this.gone(res)) return this.sendText(res, isDvsError(err, 'EDVSTIMEDOUT') ? 504 : 500, { close: true });
    this.counters.errors++;
    this.counters.serverErrors++;
    res.destroy();
  }

  /** A short text answer (errors, redirects) with Content-Length; nothing if the response is already under way. */
  private sendText(res: http.ServerResponse, status: number, opts: { close?: boolean; headers?: Record<string, string> } = {}): void {
    if (res.headersSent || this.gone(res)) return;
    if (status >= 400) this.counters.errors++;
    if (status >= 500) this.counters.serverErrors++;
    const body = statusBody(status);
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      'X-Content-Type-Options': 'nosniff',
      ...(opts.close === true ? { Connection: 'close' } : {}),
      ...opts.headers,
    });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // llhttp passes a request line without a version as HTTP/0.9.
    if (req.httpVersionMajor !== 1) return this.sendText(res, 400, { close: true });
    // A request body whose length cannot be known (RFC 9112 §6.3): llhttp rejects it only after
    // the headers, so it is refused here first, while the connection can still carry an answer.
    const codings = req.headers['transfer-encoding'];
    if (codings !== undefined && !/(^|,)\s*chunked\s*$/i.test(codings)) return this.sendText(res, 400, { close: true });
    if (!this.acceptBody(req, res)) return;
    const method = req.method ?? '';
    if (method !== 'GET' && method !== 'HEAD') return this.sendText(res, 405, { headers: { Allow: 'GET, HEAD' } });
    const host = req.headers.host;
    if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && host === undefined) return this.sendText(res, 400, { close: true });
    const target = parseTarget(req.url ?? '', host, this.opts.maxUrlLength);
    if (!target.ok) return this.sendText(res, target.status, { close: true });
    const head = method === 'HEAD';
    const stat = await this.bounded(this.files.stat(target.path));
    if (res.headersSent || this.gone(res)) return;
    if (stat === undefined || stat.kind === 'other') return this.sendText(res, 404);
    if (stat.kind === 'file') {
      // A file named as a directory (`/a.html/`) does not exist.
      if (target.trailingSlash) return this.sendText(res, 404);
      return this.serveFile(req, res, target.path, stat, head);
    }
    if (!target.trailingSlash) {
      const location = `${sitePathToUrl(target.path)}/${target.query === undefined ? '' : `?${target.query}`}`;
      return this.sendText(res, 301, { headers: { Location: location } });
    }
    const indexPath = `${target.path === '/' ? '' : target.path}/${this.opts.indexFile}`;
    const index = await this.bounded(this.files.stat(indexPath));
    if (res.headersSent || this.gone(res)) return;
    if (index?.kind === 'file') return this.serveFile(req, res, indexPath, index, head);
    const entries = await this.bounded(this.files.readdir(target.path));
    if (res.headersSent || this.gone(res)) return;
    const page = Buffer.from(renderDirIndex(target.path, entries));
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': String(page.length),
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
    });
    if (!head) this.counters.bytes += page.length;
    res.end(head ? undefined : page);
  }

  /**
   * The body policy: none is wanted. A declared length above maxBodyBytes is refused at once; a
   * chunked one is counted as it arrives and refused when it passes the limit. False when answered.
   */
  private acceptBody(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.opts.maxBodyBytes) {
      this.sendText(res, 413, { close: true });
      return false;
    }
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received <= this.opts.maxBodyBytes || res.writableEnded) return;
      if (res.headersSent) res.destroy();
      else this.sendText(res, 413, { close: true });
    });
    return true;
  }

  private async serveFile(req: http.IncomingMessage, res: http.ServerResponse, path: string, stat: WebStat, head: boolean): Promise<void> {
    const etag = etagOf(stat);
    const lastModified = lastModifiedOf(stat);
    const h = (name: string): string | undefined => {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    };
    const precondition = evaluatePreconditions(
      { ifMatch: h('if-match'), ifNoneMatch: h('if-none-match'), ifModifiedSince: h('if-modified-since'), ifUnmodifiedSince: h('if-unmodified-since') },
      stat,
    );
    if (precondition === 304) {
      res.writeHead(304, { ETag: etag, 'Last-Modified': lastModified });
      res.end();
      return;
    }
    if (precondition === 412) return this.sendText(res, 412);
    // Range is defined for GET only (RFC 9110 §14.2): HEAD gets the 200 headers.
    let decision: RangeDecision = head ? { kind: 'whole' } : decideRange(h('range'), stat.size, this.opts.maxRanges);
    if (decision.kind !== 'whole' && !ifRangeHolds(h('if-range'), etag, lastModified)) decision = { kind: 'whole' };
    const type = contentTypeFor(path);
    const common = { ETag: etag, 'Last-Modified': lastModified, 'Accept-Ranges': 'bytes', 'X-Content-Type-Options': 'nosniff' };
    if (decision.kind === 'unsatisfiable') return this.sendText(res, 416, { headers: { 'Content-Range': `bytes */${stat.size}` } });
    let pieces: BodyPiece[];
    if (decision.kind === 'whole') {
      res.writeHead(200, { ...common, 'Content-Type': type, 'Content-Length': String(stat.size) });
      pieces = stat.size > 0 ? [{ start: 0, end: stat.size - 1 }] : [];
    } else if (decision.spans.length === 1) {
      const [span] = decision.spans as [ByteSpan];
      res.writeHead(206, { ...common, 'Content-Type': type, 'Content-Range': contentRange(span, stat.size), 'Content-Length': String(span.end - span.start + 1) });
      pieces = [span];
    } else {
      const boundary = randomBytes(12).toString('hex');
      pieces = [];
      let length = 0;
      for (const span of decision.spans) {
        const part = Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: ${contentRange(span, stat.size)}\r\n\r\n`);
        pieces.push(part, span);
        length += part.length + span.end - span.start + 1;
      }
      const closing = Buffer.from(`\r\n--${boundary}--\r\n`);
      pieces.push(closing);
      length += closing.length;
      res.writeHead(206, { ...common, 'Content-Type': `multipart/byteranges; boundary=${boundary}`, 'Content-Length': String(length) });
    }
    if (head) {
      res.end();
      return;
    }
    await this.sendBody(res, path, stat, pieces);
  }

  private async sendBody(res: http.ServerResponse, path: string, stat: WebStat, pieces: readonly BodyPiece[]): Promise<void> {
    let whole = this.cache.get(path, stat);
    if (whole !== undefined) this.counters.cacheHits++;
    else if (this.cache.admits(stat) && pieces.length > 0) {
      // A small file is read in one call whatever the spans, and kept for the next request.
      const read = await this.readAt(path, 0, stat.size);
      if (!read.ok) throw read.error;
      if (this.gone(res)) return;
      whole = read.bytes;
      this.cache.set(path, stat, whole);
    }
    for (const piece of pieces) {
      const sent = piece instanceof Uint8Array
        ? await this.write(res, piece)
        : whole !== undefined
          ? await this.write(res, whole.subarray(piece.start, piece.end + 1))
          : await this.streamSpan(res, path, piece);
      if (!sent) return;
    }
    res.end();
  }

  /**
   * One span of a file, chunk by chunk: the next read is issued before the current chunk is
   * written, and no read is issued once the client is gone. False if the client went away.
   */
  private async streamSpan(res: http.ServerResponse, path: string, span: ByteSpan): Promise<boolean> {
    const end = span.end + 1;
    let offset = span.start;
    let next: Promise<ReadResult> | undefined = this.readAt(path, offset, Math.min(this.opts.chunkSize, end - offset));
    while (next !== undefined) {
      const read = await next;
      if (!read.ok) throw read.error;
      offset += read.bytes.length;
      if (this.gone(res)) return false;
      next = offset < end ? this.readAt(path, offset, Math.min(this.opts.chunkSize, end - offset)) : undefined;
      if (!(await this.write(res, read.bytes))) return false;
    }
    return true;
  }

  /** Exactly `length` bytes at `offset`, as a result (a read ahead must never be an unhandled rejection). */
  private readAt(path: string, offset: number, length: number): Promise<ReadResult> {
    return this.bounded(this.files.read(path, offset, length)).then(
      (bytes): ReadResult => (bytes.length === length
        ? { ok: true, bytes }
        : { ok: false, error: new DvsError('EDVSIO', 'file shorter than its stat (changed while served)', { details: { path, offset, length, got: bytes.length } }) }),
      (error: unknown): ReadResult => ({ ok: false, error }),
    );
  }

  /**
   * Whether the client is gone. The connection is the request's socket: a pipelined response has
   * no `res.socket` until the ones before it finish, and is not gone for that.
   */
  /** A WebFiles call under filesTimeoutMs: a hung file server fails the request instead of holding it forever. */
  private bounded<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new DvsError('EDVSTIMEDOUT', 'WebFiles call timed out', { details: { ms: this.opts.filesTimeoutMs } })), this.opts.filesTimeoutMs);
    });
    return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
  }

  private gone(res: http.ServerResponse): boolean {
    return res.destroyed || res.req.socket.destroyed;
  }

  /** Hand bytes to the socket; if it pushes back, wait for drain under the stall rule. False if the client went away. */
  private async write(res: http.ServerResponse, bytes: Uint8Array): Promise<boolean> {
    if (this.gone(res)) return false;
    let flowing = true;
    for (let at = 0; at < bytes.length; at += WRITE_SLICE) flowing = res.write(bytes.subarray(at, at + WRITE_SLICE));
    this.counters.bytes += bytes.length;
    return flowing ? true : this.drained(res);
  }

  /**
   * Wait for 'drain'. Progress is the socket's queue shrinking (slice by slice); none for
   * writeStallTimeoutMs destroys the socket, so a client that stops reading frees its buffers.
   */
  private drained(res: http.ServerResponse): Promise<boolean> {
    const socket = res.req.socket;
    const stallMs = this.opts.writeStallTimeoutMs;
    return new Promise<boolean>((resolve) => {
      let queued = socket.writableLength;
      let progressAt = Date.now();
      const check = setInterval(() => {
        if (socket.writableLength < queued) progressAt = Date.now();
        queued = socket.writableLength;
        if (Date.now() - progressAt >= stallMs) {
          this.counters.stalledSockets++;
          this.counters.errors++;
          socket.destroy();
        }
      }, Math.max(5, Math.floor(stallMs / 4)));
      const finish = (ok: boolean): void => {
        clearInterval(check);
        res.off('drain', onDrain);
        res.off('close', onClose);
        socket.off('close', onClose);
        resolve(ok);
      };
      const onDrain = (): void => finish(true);
      const onClose = (): void => finish(false);
      res.on('drain', onDrain);
      res.on('close', onClose);
      socket.on('close', onClose);
    });
  }
}
