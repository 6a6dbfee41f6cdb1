import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createContext, resolveConnection } from './context.js';
import { testIo } from './testing.js';

void describe('global options', () => {
  void it('prefers flags over the environment over the default', () => {
    assert.deepEqual(resolveConnection({}, {}), { url: 'http://127.0.0.1:8480', token: undefined });
    assert.deepEqual(resolveConnection({}, { RAMPART_URL: 'https://a.example', RAMPART_TOKEN: 'e' }), {
      url: 'https://a.example',
      token: 'e',
    });
    assert.deepEqual(
      resolveConnection(
        { url: 'https://b.example', token: 'f' },
        { RAMPART_URL: 'https://a.example', RAMPART_TOKEN: 'e' },
      ),
      { url: 'https://b.example', token: 'f' },
    );
    assert.deepEqual(resolveConnection({}, { RAMPART_URL: '', RAMPART_TOKEN: '' }), {
      url: 'http://127.0.0.1:8480',
      token: undefined,
    });
  });

  void it('warns when a token would cross the network unencrypted, and hands the token over for masking', () => {
    const secrets: string[] = [];
    const remote = testIo({ RAMPART_URL: 'http://rampart.example:8480', RAMPART_TOKEN: 'tok' });
    createContext({ output: 'table' }, remote, (s) => secrets.push(s));
    assert.match(remote.stderr.text, /warning: sending the API token unencrypted to rampart\.example:8480/);
    assert.ok(!remote.stderr.text.includes('tok\n'));
    assert.deepEqual(secrets, ['tok']);

    for (const url of [
      'http://127.0.0.1:8480',
      'http://localhost:8480',
      'http://[::1]:8480',
      'https://rampart.example',
    ]) {
      const io = testIo({ RAMPART_URL: url, RAMPART_TOKEN: 'tok' });
      createContext({ output: 'table' }, io, () => undefined);
      assert.equal(io.stderr.text, '', url);
    }
  });
});
