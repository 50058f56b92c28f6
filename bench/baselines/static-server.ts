/**
 * The web suite's baseline: Node's own `http` serving files from a local directory, one process,
 * as a plain static server would (stat, then the whole file for a small one, a stream for a big
 * one). Prints its port on stdout. Args: <root dir>.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? '.');
const server = http.createServer((req, res) => {
  const p = path.join(root, path.normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/')));
  if (!p.startsWith(root)) {
    res.writeHead(400).end();
    return;
  }
  stat(p).then(
    async (s) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': s.size, 'last-modified': s.mtime.toUTCString() });
      if (s.size <= 64 * 1024) res.end(await readFile(p));
      else createReadStream(p).pipe(res);
    },
    () => res.writeHead(404).end(),
  );
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
