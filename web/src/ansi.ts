/**
 * Terminal escape sequences out, text kept: what a <pre> cannot show of a serial console's output.
 * - CSI: ESC [ (or 0x9b) parameters 0x30–0x3f, intermediates 0x20–0x2f, a final 0x40–0x7e
 *   (colours, cursor moves, and the ESC[6n cursor-position query busybox's shell sends);
 * - OSC, DCS, SOS, PM, APC: ESC ] / P / X / ^ / _ (or their C1 bytes) up to BEL or ST (ESC \ or 0x9c);
 * - other escapes: ESC, intermediates, one final byte (ESC ( B, ESC 7, ESC =);
 * - control characters but tab and newline (carriage returns, backspaces, bells).
 * A sequence cut off at the end of a chunk is kept back and finished by the next chunk.
 */

/** The longest unfinished sequence kept back; a longer one is dropped (a runaway OSC string). */
const MAX_PENDING = 4096;

const ESC = 0x1b;
const BEL = 0x07;
const C1_CSI = 0x9b;
const C1_ST = 0x9c;
/** C1 bytes that open a string (DCS, SOS, OSC, PM, APC). */
const C1_STRINGS = new Set([0x90, 0x98, 0x9d, 0x9e, 0x9f]);
/** What follows ESC to open a string: P (DCS), X (SOS), ] (OSC), ^ (PM), _ (APC). */
const ESC_STRINGS = new Set(['P', 'X', ']', '^', '_']);

const inRange = (code: number, low: number, high: number) => code >= low && code <= high;

/** The end (exclusive) of a CSI whose parameters start at `i`; -1 when the text ends first. */
function csiEnd(text: string, i: number): number {
  let j = i;
  while (j < text.length && inRange(text.charCodeAt(j), 0x30, 0x3f)) j++;
  while (j < text.length && inRange(text.charCodeAt(j), 0x20, 0x2f)) j++;
  if (j >= text.length) return -1;
  // A malformed CSI ends before the stray byte, which is then read as text.
  return inRange(text.charCodeAt(j), 0x40, 0x7e) ? j + 1 : j;
}

/** The end of a string sequence whose body starts at `i` (after BEL or ST); -1 when unfinished. */
function stringEnd(text: string, i: number): number {
  for (let j = i; j < text.length; j++) {
    const code = text.charCodeAt(j);
    if (code === BEL || code === C1_ST) return j + 1;
    if (code === ESC) {
      if (j + 1 >= text.length) return -1;
      // ESC \ is ST; any other ESC aborts the string and starts a sequence of its own.
      return text[j + 1] === '\\' ? j + 2 : j;
    }
  }
  return -1;
}

/** The end of the escape sequence at `i` (an ESC or a C1 introducer); -1 when the text ends first. */
function sequenceEnd(text: string, i: number): number {
  const code = text.charCodeAt(i);
  if (code === C1_CSI) return csiEnd(text, i + 1);
  if (C1_STRINGS.has(code)) return stringEnd(text, i + 1);
  if (i + 1 >= text.length) return -1;
  const next = text[i + 1]!;
  if (next === '[') return csiEnd(text, i + 2);
  if (ESC_STRINGS.has(next)) return stringEnd(text, i + 2);
  let j = i + 1;
  while (j < text.length && inRange(text.charCodeAt(j), 0x20, 0x2f)) j++;
  if (j >= text.length) return -1;
  return inRange(text.charCodeAt(j), 0x30, 0x7e) ? j + 1 : j;
}

function isIntroducer(code: number): boolean {
  return code === ESC || code === C1_CSI || C1_STRINGS.has(code);
}

function isShown(code: number): boolean {
  if (code === 0x09 || code === 0x0a) return true;
  return code >= 0x20 && code !== 0x7f && !inRange(code, 0x80, 0x9f);
}

/** `text` without escape sequences and control characters; `rest` an unfinished sequence at its end. */
export function stripAnsi(text: string): { text: string; rest: string } {
  let out = '';
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (isShown(code)) {
      i++;
      continue;
    }
    out += text.slice(start, i);
    if (isIntroducer(code)) {
      const end = sequenceEnd(text, i);
      if (end === -1) return { text: out, rest: text.slice(i) };
      i = end;
    } else {
      i++;
    }
    start = i;
  }
  return { text: out + text.slice(start), rest: '' };
}

/** A stripper for a stream of chunks: each call returns the chunk's text, carrying cut sequences over. */
export function createAnsiStripper(): (chunk: string) => string {
  let pending = '';
  return (chunk) => {
    const { text, rest } = stripAnsi(pending + chunk);
    pending = rest.length > MAX_PENDING ? '' : rest;
    return text;
  };
}
