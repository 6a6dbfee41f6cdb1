/**
 * Reading what the user types: a line from the terminal (without echo for passwords, in raw mode so
 * nothing is shown), or secrets piped on stdin (`--password-stdin`). Passwords never come from
 * arguments: those are visible to every local user in the process list.
 */
import type { InStream } from './context.js';
import { GeneralError, UsageError } from './errors.js';
import type { OutStream } from './output.js';

/** The most stdin may hold for `--password-stdin` (passwords are at most 256 characters). */
export const MAX_STDIN_BYTES = 64 * 1024;
/** The longest line taken from the terminal. */
const MAX_LINE_CHARS = 1024;

export interface PromptIo {
  stdin: InStream;
  stderr: OutStream;
}

/** Whether the user can be asked: stdin is a terminal that can be put in raw mode. */
export function canPrompt(stdin: InStream): boolean {
  return stdin.isTTY === true && typeof stdin.setRawMode === 'function';
}

/** Reads stdin to its end (at most MAX_STDIN_BYTES) as UTF-8 text. */
export function readAllStdin(stdin: InStream, limit = MAX_STDIN_BYTES): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      stdin.pause();
    };
    function onData(chunk: Buffer | string) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      size += bytes.length;
      if (size > limit) {
        cleanup();
        reject(new UsageError(`stdin holds more than ${limit} bytes; expected a password on one line`));
        return;
      }
      chunks.push(bytes);
    }
    function onEnd() {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    }
    function onError(err: Error) {
      cleanup();
      reject(new GeneralError(`cannot read stdin: ${err.message}`));
    }
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onError);
    stdin.resume();
  });
}

/**
 * Reads exactly `names.length` lines from stdin (trailing empty lines are ignored), one per name, e.g.
 * `['the password']` or `['the current password', 'the new password']`. A line may not be empty.
 */
export async function readStdinLines(stdin: InStream, names: readonly string[]): Promise<string[]> {
  const text = await readAllStdin(stdin);
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== names.length) {
    const expected = names.length === 1 ? 'one line' : `${names.length} lines (${names.join(', then ')})`;
    throw new UsageError(`expected ${expected} on stdin, got ${lines.length}`);
  }
  lines.forEach((line, i) => {
    if (line.length === 0) throw new UsageError(`${names[i] ?? 'a line'} on stdin is empty`);
  });
  return lines;
}

/**
 * Reads one line from the terminal in raw mode: echoed for plain answers, hidden for secrets.
 * Backspace edits, Enter ends the line, Ctrl-C and Ctrl-D (on an empty line) cancel.
 */
export function promptLine(io: PromptIo, question: string, options: { secret: boolean }): Promise<string> {
  const { stdin, stderr } = io;
  if (!canPrompt(stdin)) {
    return Promise.reject(new UsageError('cannot ask: stdin is not a terminal'));
  }
  return new Promise((resolve, reject) => {
    let line = '';
    stderr.write(question);
    stdin.setRawMode?.(true);
    const finish = (fn: () => void) => {
      stdin.off('data', onData);
      stdin.off('error', onError);
      stdin.setRawMode?.(false);
      stdin.pause();
      process.off('exit', restore);
      stderr.write('\n');
      fn();
    };
    function restore() {
      stdin.setRawMode?.(false);
    }
    function onError(err: Error) {
      finish(() => reject(new GeneralError(`cannot read from the terminal: ${err.message}`)));
    }
    function onData(chunk: Buffer | string) {
      const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      for (const char of text) {
        if (char === '\r' || char === '\n') {
          finish(() => resolve(line));
          return;
        }
        if (char === '\u0003' || (char === '\u0004' && line.length === 0)) {
          finish(() => reject(new GeneralError('cancelled')));
          return;
        }
        if (char === '\u007f' || char === '\b') {
          if (line.length > 0) {
            const chars = [...line];
            chars.pop();
            line = chars.join('');
            if (!options.secret) stderr.write('\b \b');
          }
          continue;
        }
        // Other control characters (escape sequences of arrow keys, tabs) are not part of the answer.
        if (char < ' ' || char === '\u001b') continue;
        if (line.length >= MAX_LINE_CHARS) continue;
        line += char;
        if (!options.secret) stderr.write(char);
      }
    }
    process.on('exit', restore);
    stdin.on('data', onData);
    stdin.on('error', onError);
    stdin.resume();
  });
}

/** Asks for a secret on the terminal; it may not be empty. */
export async function promptSecret(io: PromptIo, question: string): Promise<string> {
  const answer = await promptLine(io, question, { secret: true });
  if (answer.length === 0) throw new UsageError('no password given');
  return answer;
}

/** Asks twice for a new password and checks that both agree. */
export async function promptNewPassword(io: PromptIo, question = 'New password: '): Promise<string> {
  const first = await promptSecret(io, question);
  const second = await promptLine(io, 'Repeat it: ', { secret: true });
  if (first !== second) throw new UsageError('the passwords do not match');
  return first;
}

/**
 * One password: from stdin with `--password-stdin`, else asked on the terminal. Without either there
 * is nowhere to read it from, which is a usage error (never an argument).
 */
export async function readPassword(
  io: PromptIo,
  options: { fromStdin: boolean; question: string; flag: string; confirm?: boolean },
): Promise<string> {
  if (options.fromStdin) {
    const [password] = await readStdinLines(io.stdin, ['the password']);
    return password ?? '';
  }
  if (!canPrompt(io.stdin)) {
    throw new UsageError(`stdin is not a terminal: pass ${options.flag} and pipe the password on stdin`);
  }
  return options.confirm ? promptNewPassword(io, options.question) : promptSecret(io, options.question);
}
