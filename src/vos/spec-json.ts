/**
 * Strict JSON for hand-written files (the VOS spec): the same grammar as JSON.parse, but an error
 * says where (line and column, which JSON.parse in Node 20 does not always give), and a key that
 * appears twice in one object is an error instead of the last one silently winning: in a file a
 * person edits, a duplicate is a mistake.
 */

export class JsonTextError extends Error {
  override readonly name = 'JsonTextError';
  constructor(
    readonly what: string,
    readonly offset: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(`line ${line}, column ${column}: ${what}`);
  }
}

/** Deepest nesting accepted (arrays and objects), so hostile input cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Parses `text` as one JSON value (a leading byte-order mark is skipped); JsonTextError otherwise. */
export function parseJsonText(text: string): JsonValue {
  return new Parser(text).document();
}

const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

class Parser {
  private i = 0;

  constructor(private readonly s: string) {
    if (s.charCodeAt(0) === 0xfeff) this.i = 1;
  }

  document(): JsonValue {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail(`unexpected ${this.show()} after the end of the document`);
    return v;
  }

  private fail(what: string, at = this.i): never {
    let line = 1;
    let col = 1;
    for (let k = 0; k < at && k < this.s.length; k++) {
      if (this.s.charCodeAt(k) === 10) {
        line++;
        col = 1;
      } else col++;
    }
    throw new JsonTextError(what, at, line, col);
  }

  private show(): string {
    if (this.i >= this.s.length) return 'end of input';
    return JSON.stringify(this.s[this.i]);
  }

  private ws(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else return;
    }
  }

  private value(depth: number): JsonValue {
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object(depth + 1);
      case '[':
        return this.array(depth + 1);
      case '"':
        return this.string();
      case 't':
        return this.word('true', true);
      case 'f':
        return this.word('false', false);
      case 'n':
        return this.word('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail(`expected a value, got ${this.show()}`);
    }
  }

  private word<T>(w: string, v: T): T {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail(`expected a value, got ${this.show()}`);
  }

  private object(depth: number): JsonValue {
    if (depth > MAX_JSON_DEPTH) this.fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    this.i++;
    const out: Record<string, JsonValue> = {};
    const seen = new Set<string>();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail(`expected a key in double quotes, got ${this.show()}`);
      const at = this.i;
      const key = this.string();
      if (seen.has(key)) this.fail(`duplicate key ${JSON.stringify(key)}`, at);
      seen.add(key);
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ':' after key ${JSON.stringify(key)}, got ${this.show()}`);
      this.i++;
      this.ws();
      // defineProperty: a key "__proto__" is an ordinary key, as with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(depth), enumerable: true, writable: true, configurable: true });
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === '}') {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or '}' in an object, got ${this.show()}`);
    }
  }

  private array(depth: number): JsonValue {
    if (depth > MAX_JSON_DEPTH) this.fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === ']') {
        this.i++;
        return out;
      }
      this.fail(`expected ',' or ']' in an array, got ${this.show()}`);
    }
  }

  private string(): string {
    const start = this.i;
    this.i++;
    let out = '';
    for (;;) {
      if (this.i >= this.s.length) this.fail('unterminated string', start);
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('control character in a string (write it as an escape)');
      if (c !== 0x5c) {
        out += this.s[this.i];
        this.i++;
        continue;
      }
      const e = this.s[this.i + 1];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && simple[e] !== undefined) {
        out += simple[e];
        this.i += 2;
        continue;
      }
      if (e === 'u') {
        const hex = this.s.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape: expected four hex digits');
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
        continue;
      }
      this.fail(`bad escape ${JSON.stringify(`\\${e ?? ''}`)}`);
    }
  }

  private number(): number {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (m === null) this.fail(`bad number`);
    const next = this.s[this.i + m[0].length];
    if (next !== undefined && /[0-9.eE+-]/.test(next)) this.fail('bad number', this.i + m[0].length);
    this.i += m[0].length;
    return Number(m[0]);
  }
}
