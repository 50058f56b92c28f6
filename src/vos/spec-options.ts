/**
 * The `options` of a server in a VOS spec (docs/vos/spec.md, "Server options"): what each known
 * server takes, checked as strictly as the rest of the spec, so a misspelt option is an error that
 * names its field. A custom server's options are passed through as they are (flat values only).
 */
import type { KnownServer } from './spec.js';

export type OptionValue = string | number | boolean;
export type ServerOptions = Readonly<Record<string, OptionValue>>;

interface OptionRule {
  readonly type: 'string' | 'number' | 'integer' | 'boolean';
  readonly required?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly what: string;
}

const RULES: Partial<Record<KnownServer, Readonly<Record<string, OptionRule>>>> = {
  rdisk: {
    image: { type: 'string', required: true, what: 'the image file on its node: absolute, or relative to the node\'s data directory' },
    readOnly: { type: 'boolean', what: 'serve the image read-only' },
  },
  fs: {
    cacheMB: { type: 'number', min: 1, max: 65536, what: 'the block cache, in MiB' },
  },
  nweb: {
    port: { type: 'integer', min: 0, max: 65535, what: 'the TCP port on its node' },
    address: { type: 'string', what: 'the address it listens on' },
    root: { type: 'string', what: 'the directory of the FS it serves, absolute' },
  },
};

/** Checks `raw` as the options of `server`, reporting each problem through `err`; the options, or undefined when absent or wrong. */
export function checkServerOptions(server: KnownServer | 'custom', raw: unknown, path: string, err: (path: string, what: string) => void): ServerOptions | undefined {
  const rules = server === 'custom' ? undefined : RULES[server];
  if (raw === undefined) {
    const missing = rules === undefined ? [] : Object.entries(rules).filter(([, r]) => r.required === true);
    for (const [k, r] of missing) err(`${path}.options.${k}`, `required: ${r.what}`);
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    err(`${path}.options`, 'must be an object');
    return undefined;
  }
  if (server !== 'custom' && rules === undefined) {
    err(`${path}.options`, `${server} takes no options`);
    return undefined;
  }
  const out: Record<string, OptionValue> = {};
  let ok = true;
  const bad = (k: string, what: string): void => {
    ok = false;
    err(`${path}.options.${k}`, what);
  };
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const rule = rules?.[k];
    if (rules !== undefined && rule === undefined) {
      bad(k, `unknown option of ${server} (options: ${Object.keys(rules).join(', ')})`);
      continue;
    }
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      bad(k, 'must be a string, a number or a boolean');
      continue;
    }
    if (rule !== undefined) {
      const t = rule.type === 'integer' ? 'number' : rule.type;
      if (typeof v !== t || (rule.type === 'integer' && !Number.isInteger(v)) || (typeof v === 'number' && ((rule.min !== undefined && v < rule.min) || (rule.max !== undefined && v > rule.max)))) {
        const range = rule.min === undefined ? '' : ` in ${rule.min}..${rule.max ?? '∞'}`;
        bad(k, `must be ${rule.type === 'integer' ? 'an integer' : `a ${rule.type}`}${range} (${rule.what}), got ${JSON.stringify(v)}`);
        continue;
      }
      if (typeof v === 'string' && v.length === 0) {
        bad(k, `must not be empty (${rule.what})`);
        continue;
      }
    }
    out[k] = v;
  }
  for (const [k, r] of Object.entries(rules ?? {})) if (r.required === true && !(k in out) && !Object.hasOwn(raw, k)) bad(k, `required: ${r.what}`);
  return ok ? out : undefined;
}
