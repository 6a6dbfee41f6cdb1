/**
 * The platform signing key: signs the images the platform imports or produces (images.platformSignature),
 * so that a platform image is accepted on a tenant's `acceptPlatformImages` only when a signature by this
 * key vouches for its exact digest (common/trust-policy.ts), on the server and again on the agent.
 *
 * The Ed25519 private key lives in <dataDir>/secrets/platform-signing.key (PKCS8 PEM), created at first
 * use with mode 0600 in a 0700 directory, and refused when it is a symlink, not a regular file, owned by
 * another user or accessible by group or others (common/secret-file.ts, as for the master key). The key
 * never leaves this class: there is no getter, and logs and JSON see only its key id.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { keyIdOf, serializeEnvelope, signDsse, trustedKey, type TrustedKey } from '../../common/dsse.js';
import { imageStatement, signStatement, type ImageSignatureFormat } from '../../common/in-toto.js';
import { createSecretFile, readSecretFile } from '../../common/secret-file.js';

export const PLATFORM_SIGNING_KEY_FILE = 'platform-signing.key';

export interface PlatformImageToSign {
  /** Lowercase hex SHA-256 of the image (its identity: the bundle digest for kernel+initrd). */
  sha256: string;
  format: ImageSignatureFormat;
  /** The image name (the statement's subject name and imageName). */
  name: string;
  sizeBytes: number;
  /** Defaults to now. */
  signedAt?: Date;
}

function parsePrivateKey(pem: Buffer, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem', type: 'pkcs8' });
  } catch (err) {
    throw new Error(`platform signing key file ${path} is not a PKCS8 PEM private key`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(
      `platform signing key file ${path} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`,
    );
  }
  return key;
}

export class PlatformSigner {
  readonly #privateKey: KeyObject;
  /** DSSE key id: lowercase hex SHA-256 of the public key's SPKI DER. */
  readonly keyid: string;
  /** The public key, SPKI PEM. */
  readonly publicKeyPem: string;
  /** Where the key was read from or written to. */
  readonly path: string;
  /** True when this load created the key file. */
  readonly created: boolean;

  private constructor(privateKey: KeyObject, path: string, created: boolean) {
    this.#privateKey = privateKey;
    this.keyid = keyIdOf(privateKey);
    this.publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    this.path = path;
    this.created = created;
  }

  /** Loads <dataDir>/secrets/platform-signing.key, creating it with a new key when it does not exist. */
  static load(dataDir: string): PlatformSigner {
    const path = join(dataDir, 'secrets', PLATFORM_SIGNING_KEY_FILE);
    for (let attempt = 0; ; attempt++) {
      const existing = readSecretFile(path, 'platform signing key file');
      if (existing !== null) {
        try {
          return new PlatformSigner(parsePrivateKey(existing, path), path, false);
        } finally {
          existing.fill(0);
        }
      }
      const { privateKey } = generateKeyPairSync('ed25519');
      const pem = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }));
      try {
        createSecretFile(path, pem);
        return new PlatformSigner(privateKey, path, true);
      } catch (err) {
        // Another process created it between our read and our create: use theirs (once).
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      } finally {
        pem.fill(0);
      }
    }
  }

  /** The platform key as a verifier trusts it (evaluateTrust's platformKeys). */
  trustedKey(): TrustedKey {
    return trustedKey(createPublicKey(this.#privateKey));
  }

  /** Signs an image: the serialized DSSE envelope (in-toto statement) to store in images.platformSignature. */
  signImage(input: PlatformImageToSign): string {
    const statement = imageStatement({
      sha256: input.sha256,
      subjectName: input.name,
      imageName: input.name,
      format: input.format,
      sizeBytes: input.sizeBytes,
      signedAt: (input.signedAt ?? new Date()).toISOString(),
    });
    return serializeEnvelope(signStatement(statement, this.#privateKey));
  }

  /** Signs any platform statement (e.g. a backup manifest): the serialized DSSE envelope. */
  sign(payloadType: string, payload: Uint8Array): string {
    return serializeEnvelope(signDsse(payloadType, payload, this.#privateKey));
  }

  toJSON(): { keyid: string } {
    return { keyid: this.keyid };
  }

  toString(): string {
    return `PlatformSigner(${this.keyid})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
