/**
 * Output plumbing: aligned tables and key/value blocks for people, JSON for scripts, colours only on
 * a terminal, and the small formatters (age, sizes, short ids) the resource views share. Every string
 * that came from the server goes through `sanitize` before it reaches a terminal.
 */

export const OUTPUT_FORMATS = ['table', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The writable side of a stream, as much of it as the CLI uses (process.stdout or a test capture). */
export interface OutStream {
  write(chunk: string | Uint8Array): unknown;
  isTTY?: boolean;
  columns?: number;
}

export type Color = 'green' | 'red' | 'yellow' | 'cyan' | 'dim';
const ANSI: Record<Color, string> = { green: '32', red: '31', yellow: '33', cyan: '36', dim: '2' };

/** A table cell: plain text, or text with a colour used when colours are on. */
export type Cell = string | { text: string; color?: Color };

// C0 and C1 control characters and DEL: escape sequences from a server or guest must not drive the terminal.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;

/** Replaces control characters (including ESC, CR and LF) with `?`, so text stays on its line. */
export function sanitize(text: string): string {
  return text.replace(CONTROL_CHARS, '?');
}

function cellText(cell: Cell): string {
  return sanitize(typeof cell === 'string' ? cell : cell.text);
}

function paint(text: string, color: Color | undefined, useColor: boolean): string {
  return useColor && color ? `\u001b[${ANSI[color]}m${text}\u001b[0m` : text;
}

/**
 * Formats rows under headers with columns aligned by padding (three spaces between columns, no
 * trailing spaces). Colours never change the alignment: widths are measured on the plain text.
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
  useColor = false,
): string {
  const texts = rows.map((row) => headers.map((_, i) => cellText(row[i] ?? '')));
  const widths = headers.map((h, i) => Math.max(h.length, ...texts.map((row) => row[i]?.length ?? 0)));
  const line = (cells: readonly string[], colors: readonly (Color | undefined)[]) =>
    cells
      .map((text, i) => {
        const last = i === cells.length - 1;
        const padded = last ? text : text.padEnd(widths[i] ?? 0);
        // Paint only the text, not the padding.
        return paint(text, colors[i], useColor) + padded.slice(text.length);
      })
      .join('   ')
      .trimEnd();
  const out = [line(headers, [])];
  rows.forEach((row, r) => {
    const colors = headers.map((_, i) => {
      const cell = row[i];
      return typeof cell === 'object' ? cell.color : undefined;
    });
    out.push(line(texts[r] ?? [], colors));
  });
  return out.join('\n') + '\n';
}

/** Formats `Key: value` lines with the values aligned. */
export function formatKeyValue(pairs: readonly (readonly [string, Cell])[], useColor = false): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return (
    pairs
      .map(([key, value]) => {
        const text = cellText(value);
        const color = typeof value === 'object' ? value.color : undefined;
        return `${`${key}:`.padEnd(width)}  ${paint(text, color, useColor)}`.trimEnd();
      })
      .join('\n') + '\n'
  );
}

/** Age of an ISO timestamp as a short duration: `42s`, `5m`, `3h`, `2d`. `-` when unknown. */
export function formatAge(iso: string | null | undefined, nowMs: number): string {
  if (!iso) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '-';
  return formatDuration(Math.max(0, nowMs - then) / 1000);
}

export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function trimNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** Memory in MiB: `512 MiB`, `2 GiB`, `1.5 GiB`. */
export function formatMiB(mib: number): string {
  if (mib < 1024) return `${mib} MiB`;
  if (mib < 1024 * 1024) return `${trimNumber(Math.round((mib / 1024) * 10) / 10)} GiB`;
  return `${trimNumber(Math.round((mib / 1024 / 1024) * 10) / 10)} TiB`;
}

/**
 * A part of a memory total in the total's unit: `1.5/7.5 GiB`, `256/512 MiB`, so a column of them
 * reads at a glance.
 */
export function formatMiBOf(used: number, total: number): string {
  const [divisor, unit] =
    total < 1024 ? [1, 'MiB'] : total < 1024 * 1024 ? [1024, 'GiB'] : [1024 * 1024, 'TiB'];
  const value = (mib: number) => trimNumber(Math.round((mib / divisor) * 10) / 10);
  return `${value(used)}/${value(total)} ${unit}`;
}

/** A byte count: `512 B`, `12.3 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${trimNumber(Math.round(value * 10) / 10)} ${units[unit]}`;
}

/** The first 8 characters of a UUID, as tables show ids. */
export function shortId(id: string | null | undefined): string {
  return id ? id.slice(0, 8) : '-';
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Whether a stream should get ANSI colours: a terminal, and neither NO_COLOR nor TERM=dumb. */
export function colorEnabled(stream: OutStream, env: Readonly<Record<string, string | undefined>>): boolean {
  return stream.isTTY === true && !env.NO_COLOR && env.TERM !== 'dumb';
}

/** Where a command's results go: stdout in the chosen format; progress and notices on stderr. */
export class Output {
  readonly color: boolean;
  constructor(
    private readonly stdout: OutStream,
    private readonly stderr: OutStream,
    readonly format: OutputFormat,
    env: Readonly<Record<string, string | undefined>>,
  ) {
    this.color = colorEnabled(stdout, env);
  }

  get json(): boolean {
    return this.format === 'json';
  }

  /** Prints an API body unchanged, as indented JSON. */
  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Prints text that is already formatted (tables end with a newline). */
  print(text: string): void {
    this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Writes raw bytes or text to stdout as they are (console output). */
  raw(chunk: string | Uint8Array): void {
    this.stdout.write(chunk);
  }

  /** A progress or notice line on stderr, so stdout stays clean for scripts. */
  progress(line: string): void {
    this.stderr.write(`${sanitize(line)}\n`);
  }
}
