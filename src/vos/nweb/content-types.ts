/**
 * Content-Type by file extension. A fixed table rather than a sniffing library: the answer must not
 * depend on a file's bytes (no extra read) and must be the same on every node.
 */

// A Map, not an object literal: `x.constructor` must not find Object.prototype's.
const BY_EXTENSION: ReadonlyMap<string, string> = new Map(Object.entries({
  html: 'text/html',
  htm: 'text/html',
  css: 'text/css',
  js: 'text/javascript',
  mjs: 'text/javascript',
  cjs: 'text/javascript',
  json: 'application/json',
  map: 'application/json',
  webmanifest: 'application/manifest+json',
  txt: 'text/plain',
  text: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  xml: 'application/xml',
  svg: 'image/svg+xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  ico: 'image/x-icon',
  bmp: 'image/bmp',
  wasm: 'application/wasm',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar',
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  wav: 'audio/wav',
  mp4: 'video/mp4',
  webm: 'video/webm',
}));

/** Types that are text although not text/*: they get a charset too. */
const TEXTUAL = new Set(['application/json', 'application/manifest+json', 'application/xml', 'image/svg+xml']);

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/** The Content-Type for a site path: by its last extension, case-insensitive; UTF-8 for text. */
export function contentTypeFor(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return DEFAULT_CONTENT_TYPE;
  const type = BY_EXTENSION.get(name.slice(dot + 1).toLowerCase());
  if (type === undefined) return DEFAULT_CONTENT_TYPE;
  return type.startsWith('text/') || TEXTUAL.has(type) ? `${type}; charset=utf-8` : type;
}
