/**
 * The small sample site `dvs demo` loads into the DC's FS: a few pages, a stylesheet, a script and
 * a larger file, so a browser, curl and wrk have something real to fetch.
 */

const style = `body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
header { border-bottom: 2px solid #2a6; margin-bottom: 1rem; }
h1 { color: #2a6; margin-bottom: .2rem; }
code, pre { background: #f3f3f3; padding: .1rem .3rem; border-radius: 3px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; }
`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title><link rel="stylesheet" href="/style.css"></head>
<body><header><h1>${title}</h1><p>served by NWEB, from a MINIX file system, over a disk on another node</p></header>
${body}
<script src="/app.js"></script></body></html>
`;
}

/** The site's files: path in the FS → contents. */
export function demoSite(): Map<string, string | Uint8Array> {
  const files = new Map<string, string | Uint8Array>();
  files.set('/index.html', page('DVS web demo', `<p>This page is a file of a <b>MINIX v3</b> file system (FS) whose blocks live in a disk image served by <b>RDISK</b> on node 1. <b>NWEB</b>, the web server, asks FS for it by message passing; FS asks RDISK for blocks through grants.</p>
<ul><li><a href="/about/">about the path of a request</a></li><li><a href="/docs/">a directory without an index</a></li><li><a href="/data/sample.bin">a 1 MiB file</a> (try <code>curl -r 0-99</code>)</li></ul>
<p id="status">JavaScript has not run.</p>`));
  files.set('/about/index.html', page('The path of a request', `<table><tr><th>step</th><th>who</th></tr>
<tr><td>HTTP request</td><td>your browser → NWEB (node 0)</td></tr>
<tr><td>stat + read</td><td>NWEB → FS, M3-IPC sendrec</td></tr>
<tr><td>blocks</td><td>FS → RDISK (node 1), grants</td></tr></table><p><a href="/">back</a></p>`));
  files.set('/docs/readme.txt', 'NWEB lists a directory that has no index.html.\n');
  files.set('/docs/notes.txt', 'Ranges, ETags and conditional requests work as RFC 9110 says.\n');
  files.set('/style.css', style);
  files.set('/app.js', "document.getElementById('status').textContent = 'JavaScript ran: app.js came from the same file system.';\n");
  const bin = new Uint8Array(1024 * 1024);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 31 + (i >> 8)) & 0xff;
  files.set('/data/sample.bin', bin);
  return files;
}
