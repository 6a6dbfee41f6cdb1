/**
 * A small strict JSON scanner (RFC 8259) that records where every value sits, so errors found in
 * the parsed value (schema or semantic) can be reported with the line and column of the offending
 * value. It is only used on rule files (small, cold path); the values themselves come from
 * JSON.parse.
 *
 * scanJson(text) walks the whole text once and returns:
 *   - `error`: the first syntax error with its line/column (1-based), if any;
 *   - `positions`: JSON pointer (RFC 6901, e.g. `/rules/3/match/kind`) -> the position of the member's
 *     key for object members (the line a person looks at), or of the value for array items and the
 *     root;
 *   - `duplicates`: members whose key repeats a key earlier in the same object (JSON.parse keeps the
 *     last one silently, which in a security rule file hides a mistake).
 */

export interface Position {
  line: number;
  column: number;
}

export interface ScanResult {
  error?: Position & { message: string };
  positions: Map<string, Position>;
  duplicates: { pointer: string; key: string; position: Position }[];
}

export function escapePointerSegment(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

class SyntaxFault extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_DEPTH = 64;

export function scanJson(text: string): ScanResult {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) lineStarts.push(i + 1);
  const positionOf = (index: number): Position => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: index - lineStarts[lo]! + 1 };
  };

  const positions = new Map<string, Position>();
  const duplicates: ScanResult['duplicates'] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;

  const describe = (at: number): string =>
    at >= text.length ? 'unexpected end of input' : `unexpected character ${JSON.stringify(text[at])}`;

  const skipWs = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else return;
    }
  };

  const expectLiteral = (word: string): void => {
    for (let k = 0; k < word.length; k++) {
      if (text[i + k] !== word[k]) throw new SyntaxFault(i + k, describe(i + k));
    }
    i += word.length;
  };

  const readString = (): string => {
    const start = i;
    i++; // opening quote
    let out = '';
    let from = i;
    for (;;) {
      if (i >= text.length) throw new SyntaxFault(start, 'unterminated string');
      const c = text.charCodeAt(i);
      if (c === 34) {
        out += text.slice(from, i);
        i++;
        return out;
      }
      if (c < 0x20) throw new SyntaxFault(i, 'control character in string (escape it)');
      if (c === 92) {
        out += text.slice(from, i);
        const e = text[i + 1];
        switch (e) {
          case '"':
          case '\\':
          case '/':
            out += e;
            i += 2;
            break;
          case 'b':
            out += '\b';
            i += 2;
            break;
          case 'f':
            out += '\f';
            i += 2;
            break;
          case 'n':
            out += '\n';
            i += 2;
            break;
          case 'r':
            out += '\r';
            i += 2;
            break;
          case 't':
            out += '\t';
            i += 2;
            break;
          case 'u': {
            const hex = text.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new SyntaxFault(i, 'invalid \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 6;
            break;
          }
          default:
            throw new SyntaxFault(i, 'invalid escape in string');
        }
        from = i;
        continue;
      }
      i++;
    }
  };

  const readNumber = (): void => {
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = i;
    const found = m.exec(text);
    if (found === null || found[0].length === 0 || found[0] === '-')
      throw new SyntaxFault(i, 'invalid number');
    i += found[0].length;
    const next = text.charCodeAt(i);
    // `01`, `1.`, `1e`: the regex stopped early on something that still looks numeric.
    if ((next >= 48 && next <= 57) || next === 46 || next === 101 || next === 69)
      throw new SyntaxFault(i, 'invalid number');
  };

  const readValue = (pointer: string, depth: number): void => {
    if (depth > MAX_DEPTH) throw new SyntaxFault(i, `nesting deeper than ${MAX_DEPTH}`);
    skipWs();
    const c = text[i];
    if (c === '{') {
      i++;
      skipWs();
      if (text[i] === '}') {
        i++;
        return;
      }
      const seen = new Set<string>();
      for (;;) {
        skipWs();
        if (text[i] !== '"')
          throw new SyntaxFault(i, `${describe(i)}: expected a property name in double quotes`);
        const keyAt = i;
        const key = readString();
        const child = `${pointer}/${escapePointerSegment(key)}`;
        const position = positionOf(keyAt);
        if (seen.has(key)) duplicates.push({ pointer: child, key, position });
        else {
          seen.add(key);
          positions.set(child, position);
        }
        skipWs();
        if (text[i] !== ':') throw new SyntaxFault(i, `${describe(i)}: expected ':' after a property name`);
        i++;
        readValue(child, depth + 1);
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        throw new SyntaxFault(i, `${describe(i)}: expected ',' or '}'`);
      }
    }
    if (c === '[') {
      i++;
      skipWs();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        skipWs();
        const child = `${pointer}/${index}`;
        positions.set(child, positionOf(i));
        readValue(child, depth + 1);
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        throw new SyntaxFault(i, `${describe(i)}: expected ',' or ']'`);
      }
    }
    if (c === '"') {
      readString();
      return;
    }
    if (c === 't') return expectLiteral('true');
    if (c === 'f') return expectLiteral('false');
    if (c === 'n') return expectLiteral('null');
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return readNumber();
    throw new SyntaxFault(i, `${describe(i)}: expected a value`);
  };

  try {
    skipWs();
    positions.set('', positionOf(i));
    readValue('', 0);
    skipWs();
    if (i < text.length) throw new SyntaxFault(i, `${describe(i)} after the end of the document`);
  } catch (error) {
    if (!(error instanceof SyntaxFault)) throw error;
    return { error: { ...positionOf(error.index), message: error.message }, positions, duplicates };
  }
  return { positions, duplicates };
}

/** The position of `pointer`, or of its nearest ancestor that has one (the root at worst). */
export function locate(positions: Map<string, Position>, pointer: string): Position {
  let p = pointer;
  for (;;) {
    const found = positions.get(p);
    if (found !== undefined) return found;
    if (p === '') return { line: 1, column: 1 };
    p = p.slice(0, p.lastIndexOf('/'));
  }
}
