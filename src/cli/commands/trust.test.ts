/**
 * `rampart trust key|policy ...` and `rampart image attach-signature | signatures` against a fake API:
 * the requests they send, what they print, and usage errors that send nothing.
 */
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageSignature } from '../../api/image.js';
import type { TrustPolicy, TrustedKey } from '../../api/trust.js';
import { serializeEnvelope } from '../../common/dsse.js';
import { imageStatement, signStatement } from '../../common/in-toto.js';
import { run } from '../program.js';
import {
  apiError,
  startFakeApi,
  tempDir,
  testIo,
  whoamiFixture,
  type FakeApi,
  type Handler,
} from '../testing.js';

const SHA = 'ab'.repeat(32);
const KEY_ID = 'cd'.repeat(32);
const SIG_ID = 'aaaaaaaa-2222-4333-8444-555555555555';
const TRUSTED_ID = 'bbbbbbbb-2222-4333-8444-555555555555';

function signatureFixture(overrides: Partial<ImageSignature> = {}): ImageSignature {
  return {
    id: SIG_ID,
    imageId: 'cccccccc-2222-4333-8444-555555555555',
    keyid: KEY_ID,
    keyName: 'release',
    createdAt: new Date().toISOString(),
    ...overrides,
  };
}

function keyFixture(): TrustedKey {
  return {
    id: TRUSTED_ID,
    name: 'release',
    keyid: KEY_ID,
    publicKeyPem: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n',
    createdAt: new Date().toISOString(),
  };
}

const POLICY: TrustPolicy = { requireSignatures: true, acceptPlatformImages: false, updatedAt: null };

void describe('trust and image signature commands', () => {
  let api: FakeApi;
  let handler: Handler = () => undefined;
  let dir: ReturnType<typeof tempDir>;
  before(async () => {
    api = await startFakeApi((req) => handler(req));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
    dir = tempDir();
  });
  afterEach(() => dir.remove());
  const env = (extra: Record<string, string> = {}) => ({
    RAMPART_URL: api.url,
    RAMPART_TOKEN: 'admin-token',
    RAMPART_TENANT: 'acme',
    ...extra,
  });
  const calls = () => api.requests.map((r) => `${r.method} ${r.url}`);

  function envelopeFile(): { path: string; text: string } {
    const { privateKey } = generateKeyPairSync('ed25519');
    const statement = imageStatement({
      sha256: SHA,
      subjectName: 'tiny',
      format: 'kernel-initrd',
      sizeBytes: 1,
      signedAt: new Date().toISOString(),
    });
    const text = serializeEnvelope(signStatement(statement, privateKey));
    const path = join(dir.path, 'tiny.sig.json');
    writeFileSync(path, text);
    return { path, text };
  }

  void it('attach-signature posts the envelope and prints the attestation', async () => {
    handler = (req) => (req.method === 'POST' ? { status: 201, body: signatureFixture() } : undefined);
    const { path, text } = envelopeFile();
    const io = testIo(env());
    assert.equal(await run(['image', 'attach-signature', 'tiny', '--envelope', path], io), 0, io.stderr.text);
    assert.deepEqual(calls(), ['POST /v1/images/tiny/signatures?tenant=acme']);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { envelope: JSON.parse(text) as unknown });
    assert.match(io.stdout.text, new RegExp(`Signature: +${SIG_ID}`));
    assert.match(io.stdout.text, /Key: +release/);
  });

  void it('attach-signature reports a refused signature (exit 2) and a bad file without a request', async () => {
    handler = () => apiError(400, 'RAMPART_INVALID_INPUT', 'the signature is for another image');
    const { path } = envelopeFile();
    const io = testIo(env());
    assert.equal(await run(['image', 'attach-signature', 'tiny', '--envelope', path], io), 2);
    assert.match(io.stderr.text, /the signature is for another image/);

    api.requests.length = 0;
    const bad = join(dir.path, 'bad.json');
    writeFileSync(bad, '{"not": "an envelope"}');
    const io2 = testIo(env());
    assert.equal(await run(['image', 'attach-signature', 'tiny', '--envelope', bad], io2), 2);
    assert.match(io2.stderr.text, /exactly payloadType, payload and signatures/);
    const io3 = testIo(env());
    assert.equal(
      await run(['image', 'attach-signature', 'tiny', '--envelope', join(dir.path, 'missing')], io3),
      3,
    );
    assert.deepEqual(calls(), []);
  });

  void it('signatures lists the attestations', async () => {
    handler = () => ({ body: { items: [signatureFixture(), signatureFixture({ keyName: null })] } });
    const io = testIo(env());
    assert.equal(await run(['image', 'signatures', 'tiny'], io), 0, io.stderr.text);
    assert.deepEqual(calls(), ['GET /v1/images/tiny/signatures?tenant=acme']);
    const lines = io.stdout.text.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID +KEY +KEYID +AGE$/);
    assert.match(lines[1] ?? '', new RegExp(`^${SIG_ID} +release +${KEY_ID.slice(0, 16)} `));
    assert.match(lines[2] ?? '', /\(untrusted\)/);
  });

  void it('trust key add sends the PEM, list and remove call the API', async () => {
    handler = (req) => {
      if (req.method === 'POST') return { status: 201, body: keyFixture() };
      if (req.method === 'GET') return { body: { items: [keyFixture()] } };
      if (req.method === 'DELETE') return { status: 204 };
      return undefined;
    };
    const pem = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const pub = join(dir.path, 'release.pub');
    writeFileSync(pub, pem);
    const io = testIo(env());
    assert.equal(await run(['trust', 'key', 'add', 'release', '--pub', pub], io), 0, io.stderr.text);
    assert.deepEqual(JSON.parse(api.requests[0]?.body ?? ''), { name: 'release', publicKeyPem: pem });
    assert.match(io.stdout.text, new RegExp(`Key ID: +${KEY_ID}`));
    const list = testIo(env());
    assert.equal(await run(['trust', 'key', 'list'], list), 0);
    assert.match(list.stdout.text, /^NAME +ID +KEYID +AGE\nrelease +/);
    const rm = testIo(env());
    assert.equal(await run(['trust', 'key', 'remove', TRUSTED_ID], rm), 0, rm.stderr.text);
    assert.deepEqual(calls(), [
      'POST /v1/trusted-keys?tenant=acme',
      'GET /v1/trusted-keys?tenant=acme',
      `DELETE /v1/trusted-keys/${TRUSTED_ID}?tenant=acme`,
    ]);
  });

  void it('trust policy show and set use the tenant path (defaulting through whoami)', async () => {
    handler = (req) => {
      if (req.url === '/v1/auth/whoami') return { body: whoamiFixture() };
      if (req.url.endsWith('/trust-policy')) return { body: POLICY };
      return undefined;
    };
    const show = testIo(env());
    assert.equal(await run(['trust', 'policy', 'show'], show), 0, show.stderr.text);
    assert.match(show.stdout.text, /Require signatures: +on/);
    assert.match(show.stdout.text, /Accept platform images: +off/);
    const set = testIo(env({ RAMPART_TENANT: '' }));
    assert.equal(
      await run(
        ['trust', 'policy', 'set', '--require-signatures', 'off', '--accept-platform-images', 'on'],
        set,
      ),
      0,
      set.stderr.text,
    );
    assert.deepEqual(calls(), [
      'GET /v1/tenants/acme/trust-policy',
      'GET /v1/auth/whoami',
      'PUT /v1/tenants/acme/trust-policy',
    ]);
    assert.deepEqual(JSON.parse(api.requests[2]?.body ?? ''), {
      requireSignatures: false,
      acceptPlatformImages: true,
    });
  });

  void it('refuses invalid arguments without a request (exit 2)', async () => {
    handler = () => ({ body: POLICY });
    for (const argv of [
      ['trust', 'policy', 'set'],
      ['trust', 'policy', 'set', '--require-signatures', 'maybe'],
      ['trust', 'key', 'add', 'Bad_Name', '--pub', '/dev/null'],
      ['trust', 'key', 'add', 'release'],
      ['image', 'attach-signature', 'tiny'],
    ]) {
      const io = testIo(env());
      assert.equal(await run(argv, io), 2, argv.join(' '));
      assert.match(io.stderr.text, /^rampart: /, argv.join(' '));
    }
    assert.deepEqual(calls(), []);
  });

  void it('maps an untrusted image to exit 4', async () => {
    handler = () =>
      apiError(
        403,
        'RAMPART_UNTRUSTED_IMAGE',
        'image tiny is not trusted by this tenant: signatures are required',
      );
    const io = testIo(env());
    assert.equal(await run(['vm', 'create', 'web', '--image', 'tiny', '--flavor', 'tiny'], io), 4);
    assert.match(io.stderr.text, /RAMPART_UNTRUSTED_IMAGE/);
  });
});
