import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GeneralError, UsageError } from './errors.js';
import { promptLine, readPassword, readStdinLines } from './prompt.js';
import { FakeStdin, capture } from './testing.js';

void describe('reading secrets', () => {
  void it('reads lines from piped stdin, ignoring CR and trailing empty lines', async () => {
    assert.deepEqual(await readStdinLines(new FakeStdin().feed('old pw\r\nnew pw\n\n', null), ['a', 'b']), [
      'old pw',
      'new pw',
    ]);
    await assert.rejects(readStdinLines(new FakeStdin().feed('', null), ['the password']), UsageError);
    await assert.rejects(
      readStdinLines(new FakeStdin().feed('\nx\n', null), ['a', 'b']),
      /a on stdin is empty/,
    );
    await assert.rejects(
      readStdinLines(new FakeStdin().feed('x'.repeat(70_000), null), ['the password']),
      /more than 65536 bytes/,
    );
  });

  void it('asks on a terminal in raw mode without echo, and restores the terminal', async () => {
    const stdin = new FakeStdin(true).feed('s3cr\u007fet\r');
    const stderr = capture(true);
    assert.equal(await promptLine({ stdin, stderr }, 'Password: ', { secret: true }), 's3cet');
    assert.equal(stderr.text, 'Password: \n');
    assert.deepEqual(stdin.rawModes, [true, false]);
  });

  void it('cancels on Ctrl-C and restores the terminal', async () => {
    const stdin = new FakeStdin(true).feed('abc\u0003');
    await assert.rejects(
      promptLine({ stdin, stderr: capture(true) }, 'Password: ', { secret: true }),
      GeneralError,
    );
    assert.deepEqual(stdin.rawModes, [true, false]);
  });

  void it('checks that a new password is typed the same twice', async () => {
    const stdin = new FakeStdin(true).feed('one-pass\r', 'two-pass\r');
    await assert.rejects(
      readPassword(
        { stdin, stderr: capture(true) },
        { fromStdin: false, question: 'New: ', flag: '--x', confirm: true },
      ),
      /the passwords do not match/,
    );
  });

  void it('refuses to ask without a terminal', async () => {
    await assert.rejects(
      readPassword(
        { stdin: new FakeStdin(false), stderr: capture() },
        { fromStdin: false, question: 'P: ', flag: '--password-stdin' },
      ),
      /pass --password-stdin/,
    );
  });
});
