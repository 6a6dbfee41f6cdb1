import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { GeneralError } from './errors.js';
import {
  deleteSession,
  readSession,
  sessionFilePath,
  sessionFromTokens,
  writeSession,
  type StoredSession,
} from './session.js';
import { sessionTokensFixture, tempDir } from './testing.js';

const session: StoredSession = sessionFromTokens('http://127.0.0.1:8480/', sessionTokensFixture());

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

void describe('session file location', () => {
  void it('takes RAMPART_SESSION_FILE, then $XDG_CONFIG_HOME, then ~/.config', () => {
    assert.equal(
      sessionFilePath({ RAMPART_SESSION_FILE: '/tmp/s.json', XDG_CONFIG_HOME: '/x', HOME: '/h' }),
      '/tmp/s.json',
    );
    assert.equal(sessionFilePath({ XDG_CONFIG_HOME: '/x', HOME: '/h' }), '/x/rampart/session.json');
    assert.equal(sessionFilePath({ HOME: '/h' }), '/h/.config/rampart/session.json');
    // A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
    assert.equal(sessionFilePath({ XDG_CONFIG_HOME: 'rel', HOME: '/h' }), '/h/.config/rampart/session.json');
  });
});

void describe('session file storage', () => {
  let dir: ReturnType<typeof tempDir>;
  let oldUmask: number;
  beforeEach(() => {
    dir = tempDir();
    // The modes must hold whatever the umask says (it can only take bits away).
    oldUmask = process.umask(0o000);
  });
  afterEach(() => {
    process.umask(oldUmask);
    dir.remove();
  });

  void it('creates the directory 0700 and the file 0600, with exactly the session fields', () => {
    const path = join(dir.path, 'config', 'rampart', 'session.json');
    writeSession(path, { ...session, extra: 'dropped' } as StoredSession);
    assert.equal(mode(join(dir.path, 'config', 'rampart')), 0o700);
    assert.equal(mode(path), 0o600);
    const stored = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(stored), [
      'url',
      'username',
      'token',
      'expiresAt',
      'refreshToken',
      'refreshExpiresAt',
    ]);
    assert.deepEqual(readSession(path), session);
  });

  void it('replaces the file atomically: a new inode created 0600, no temporary file left', () => {
    const path = join(dir.path, 'session.json');
    // A file someone left readable by everyone is replaced, not rewritten in place (no chmod).
    writeFileSync(path, '{}', { mode: 0o644 });
    const before = statSync(path).ino;
    writeSession(path, session);
    const after = statSync(path);
    assert.notEqual(after.ino, before, 'renamed over, not rewritten');
    assert.equal(after.mode & 0o777, 0o600);
    writeSession(path, { ...session, token: 'session-token-2' });
    assert.equal(readSession(path)?.token, 'session-token-2');
    assert.deepEqual(readdirSync(dir.path), ['session.json']);
  });

  void it('leaves the old session and no temporary file behind when the write fails', () => {
    // The rename cannot replace a non-empty directory: the write fails after the temporary file exists.
    const path = join(dir.path, 'session.json');
    mkdirSync(path);
    writeFileSync(join(path, 'keep'), 'x');
    assert.throws(() => writeSession(path, session), GeneralError);
    assert.deepEqual(readdirSync(dir.path), ['session.json']);
    assert.deepEqual(readdirSync(path), ['keep']);
  });

  void it('reads nothing when there is no file, and deletes it', () => {
    const path = join(dir.path, 'session.json');
    assert.equal(readSession(path), undefined);
    assert.equal(deleteSession(path), false);
    writeSession(path, session);
    assert.equal(deleteSession(path), true);
    assert.equal(readSession(path), undefined);
  });

  void it('refuses a session file that other users can read, a symlink, or a damaged one', () => {
    const path = join(dir.path, 'session.json');
    writeSession(path, session);
    chmodSync(path, 0o644);
    assert.throws(() => readSession(path), /can be read by other users \(mode 0644\)/);
    chmodSync(path, 0o600);

    const link = join(dir.path, 'link.json');
    symlinkSync(path, link);
    assert.throws(() => readSession(link), /symbolic link/);

    const damaged = join(dir.path, 'damaged.json');
    writeFileSync(damaged, '{"url":"x"}', { mode: 0o600 });
    assert.throws(() => readSession(damaged), /is damaged \(no username\)/);
    writeFileSync(damaged, 'not json', { mode: 0o600 });
    assert.throws(() => readSession(damaged), /not valid JSON/);
  });
});
