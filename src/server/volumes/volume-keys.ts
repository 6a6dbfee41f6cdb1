/**
 * Per-volume keys. Each volume has a 32-byte key of its own (its LUKS passphrase is the base64 of it),
 * stored only wrapped by the tenant's data key with AES-256-GCM; the additional data binds the wrap to
 * the volume id, the tenant and the data key version, so a wrapped key copied to another row does not
 * open. Destroying the tenant's data keys (tenant deletion) makes every wrapped volume key useless.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KeyUnwrapError, type DataKey } from '../images/crypto/envelope-keys.js';

const NONCE_BYTES = 12;
const KEY_BYTES = 32;
const TAG_BYTES = 16;

function aad(volumeId: string, tenantId: string, version: number): Buffer {
  return Buffer.from(`rampart volume key v1\0${tenantId}\0${version}\0${volumeId}`, 'utf8');
}

/** A fresh volume key, wrapped by `dataKey`: what the volumes table stores. */
export function newWrappedVolumeKey(volumeId: string, dataKey: DataKey): string {
  const key = randomBytes(KEY_BYTES);
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', dataKey.key, nonce);
    cipher.setAAD(aad(volumeId, dataKey.tenantId, dataKey.version));
    return Buffer.concat([nonce, cipher.update(key), cipher.final(), cipher.getAuthTag()]).toString('base64');
  } finally {
    key.fill(0);
  }
}

/** The volume's LUKS passphrase (base64 of its key), for one intent to its host. */
export function volumePassphrase(volumeId: string, wrapped: string, dataKey: DataKey): string {
  const sealed = Buffer.from(wrapped, 'base64');
  if (sealed.length !== NONCE_BYTES + KEY_BYTES + TAG_BYTES)
    throw new KeyUnwrapError(`the key of volume ${volumeId} is malformed`);
  const decipher = createDecipheriv('aes-256-gcm', dataKey.key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAAD(aad(volumeId, dataKey.tenantId, dataKey.version));
  decipher.setAuthTag(sealed.subarray(NONCE_BYTES + KEY_BYTES));
  let key: Buffer;
  try {
    key = Buffer.concat([
      decipher.update(sealed.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new KeyUnwrapError(`the key of volume ${volumeId} does not unwrap (altered, moved or destroyed)`);
  }
  try {
    return key.toString('base64');
  } finally {
    key.fill(0);
  }
}
