import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { KeyUnwrapError, type DataKey } from '../images/crypto/envelope-keys.js';
import { newWrappedVolumeKey, volumePassphrase } from './volume-keys.js';

const V1 = '11111111-2222-4333-8444-555555555555';
const V2 = '22222222-2222-4333-8444-555555555555';
const dataKey = (tenantId = 't1', version = 1): DataKey => ({
  tenantId,
  version,
  key: randomBytes(32),
  keyId: `${tenantId}/v${version}`,
});

test('a volume key unwraps to the same 32-byte passphrase, only for its own volume, tenant and key', () => {
  const key = dataKey();
  const wrapped = newWrappedVolumeKey(V1, key);
  const passphrase = volumePassphrase(V1, wrapped, key);
  assert.match(passphrase, /^[A-Za-z0-9+/]{43}=$/);
  assert.equal(Buffer.from(passphrase, 'base64').length, 32);
  assert.equal(volumePassphrase(V1, wrapped, key), passphrase, 'stable');
  assert.notEqual(volumePassphrase(V1, newWrappedVolumeKey(V1, key), key), passphrase, 'fresh per volume');
  assert.throws(() => volumePassphrase(V2, wrapped, key), KeyUnwrapError, 'moved to another volume');
  assert.throws(() => volumePassphrase(V1, wrapped, { ...key, tenantId: 't2' }), KeyUnwrapError);
  assert.throws(() => volumePassphrase(V1, wrapped, dataKey()), KeyUnwrapError, 'another data key');
  const flipped = Buffer.from(wrapped, 'base64');
  flipped.writeUInt8(flipped.readUInt8(20) ^ 1, 20);
  assert.throws(() => volumePassphrase(V1, flipped.toString('base64'), key), KeyUnwrapError);
  assert.throws(() => volumePassphrase(V1, 'AAAA', key), /malformed/);
});
