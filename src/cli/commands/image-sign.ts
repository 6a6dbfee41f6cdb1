/**
 * `rampart image keygen | sign | verify-signature`: image signatures made and checked on the user's
 * machine. The server later only ever sees the public key and the DSSE envelope; the private key is read
 * here, used here and never sent (these commands make no request at all, so they work offline and need
 * no credentials). Format and a check with openssl alone: docs/image-signatures.md.
 *
 * Images can be gigabytes, so they are hashed as a stream (bounded memory). Key files are treated like
 * ssh keys: the private key is created with mode 0600 (never widened afterwards), nothing is overwritten,
 * and a private key that group or others can access is refused.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  createHash,
  type KeyObject,
} from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  fchmodSync,
  fstatSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { DSSE_MAX_ENVELOPE_BYTES, keyIdOf, serializeEnvelope, trustedKey } from '../../common/dsse.js';
import {
  IMAGE_SIGNATURE_FORMATS,
  imageStatement,
  signStatement,
  verifyImageSignature,
  type ImageSignatureFormat,
} from '../../common/in-toto.js';
import type { CommandDeps, GlobalOptions } from '../context.js';
import { GeneralError, LocalNotFoundError, UsageError, VerificationError } from '../errors.js';
import { Output, formatKeyValue } from '../output.js';
import { parseName, parsePath } from '../validation.js';

/** A PEM key file is a few hundred bytes; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 16 * 1024;
const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

/** Offline commands print through the usual Output but never build an API client. */
function output(deps: CommandDeps, cmd: Command): Output {
  const { output: format } = cmd.optsWithGlobals<GlobalOptions>();
  return new Output(deps.io.stdout, deps.io.stderr, format, deps.io.env);
}

function fileError(path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new LocalNotFoundError(`${path} not found`);
  if (code === 'EEXIST') return new UsageError(`refusing to overwrite ${path}`);
  return new GeneralError(`cannot access ${path}: ${(err as Error).message}`);
}

/**
 * Reads a small regular file whole, refusing anything over `max` bytes; `check` sees its mode first.
 * The size and mode come from the open descriptor, so a file swapped meanwhile is not read unchecked.
 */
export function readSmallFile(path: string, max: number, check?: (mode: number) => void): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fileError(path, err);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new UsageError(`${path} is not a regular file`);
    check?.(stat.mode);
    if (stat.size > max) throw new UsageError(`${path} is larger than ${max} bytes`);
    const buffer = Buffer.alloc(max + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > max) throw new UsageError(`${path} is larger than ${max} bytes`);
    }
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 and size of a file, streamed; also its first bytes (to recognise the format). */
export async function hashFile(path: string): Promise<{ sha256: string; sizeBytes: number; head: Buffer }> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fileError(path, err);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new UsageError(`${path} is not a regular file`);
  }
  const hash = createHash('sha256');
  let sizeBytes = 0;
  let head = Buffer.alloc(0);
  const stream = createReadStream('', { fd, highWaterMark: 1024 * 1024 });
  try {
    await pipeline(stream, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) {
        if (head.length < QCOW2_MAGIC.length) head = Buffer.concat([head, chunk.subarray(0, 16)]);
        hash.update(chunk);
        sizeBytes += chunk.length;
      }
    });
  } catch (err) {
    throw new GeneralError(`cannot read ${path}: ${(err as Error).message}`);
  }
  return { sha256: hash.digest('hex'), sizeBytes, head };
}

function readPrivateKey(path: string): KeyObject {
  const pem = readSmallFile(path, MAX_KEY_FILE_BYTES, (mode) => {
    if ((mode & 0o077) !== 0) {
      throw new UsageError(
        `refusing to use private key ${path}: group or others can access it (mode ` +
          `${(mode & 0o777).toString(8).padStart(4, '0')}); run chmod 600 ${path}`,
      );
    }
  });
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new UsageError(`${path} is not an unencrypted PEM private key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UsageError(`${path} is not an Ed25519 private key`);
  return key;
}

function readPublicKey(path: string): KeyObject {
  const pem = readSmallFile(path, MAX_KEY_FILE_BYTES);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new UsageError(`${path} is not a PEM public key`);
  }
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519') {
    throw new UsageError(`${path} is not an Ed25519 public key`);
  }
  return key;
}

/** Creates a file that must not exist yet, with exactly `mode` (whatever the umask). */
function createFile(path: string, content: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', mode);
  } catch (err) {
    throw fileError(path, err);
  }
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, content);
  } catch (err) {
    throw new GeneralError(`cannot write ${path}: ${(err as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

function sniffFormat(head: Buffer): ImageSignatureFormat {
  return head.subarray(0, QCOW2_MAGIC.length).equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
}

export function registerImageSigningCommands(image: Command, deps: CommandDeps): void {
  image
    .command('keygen')
    .description(
      'create an Ed25519 signing key pair here: <prefix>.key (private, mode 0600, keep it) and ' +
        '<prefix>.pub (public, to register as trusted); prints the key id',
    )
    .requiredOption('--out <prefix>', 'path prefix of the two files (neither may exist)', parsePath)
    .action((opts: { out: string }, cmd: Command) => {
      const out = output(deps, cmd);
      const privatePath = `${opts.out}.key`;
      const publicPath = `${opts.out}.pub`;
      const { publicKey, privateKey } = generateKeyPairSync('ed25519');
      const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      if (existsSync(publicPath)) throw new UsageError(`refusing to overwrite ${publicPath}`);
      createFile(privatePath, privatePem, 0o600);
      try {
        createFile(publicPath, publicPem, 0o644);
      } catch (err) {
        rmSync(privatePath, { force: true }); // ours: created just above, with 'wx'
        throw err;
      }
      const keyid = keyIdOf(publicKey);
      if (out.json) out.printJson({ keyid, privateKey: privatePath, publicKey: publicPath });
      else {
        out.print(
          formatKeyValue([
            ['Key id', keyid],
            ['Private key', privatePath],
            ['Public key', publicPath],
          ]),
        );
      }
    });

  image
    .command('sign')
    .description(
      'sign an image file here with your private key: writes a DSSE envelope (an in-toto statement ' +
        'whose subject is the sha256 of the file); the key never leaves this machine',
    )
    .argument('<file>', 'the image file', parsePath)
    .requiredOption('--key <private.pem>', 'Ed25519 private key (PKCS#8 PEM, mode 0600)', parsePath)
    .option('--name <image>', 'the image name to record in the signature', parseName)
    .addOption(
      new Option(
        '--format <format>',
        'the image format (default: qcow2 if it looks like one, else raw)',
      ).choices(IMAGE_SIGNATURE_FORMATS),
    )
    .option('--out <envelope.json>', 'where to write the envelope (default <file>.dsse.json)', parsePath)
    .action(
      async (
        file: string,
        opts: { key: string; name?: string; format?: ImageSignatureFormat; out?: string },
        cmd: Command,
      ) => {
        const out = output(deps, cmd);
        const privateKey = readPrivateKey(opts.key);
        const target = opts.out ?? `${file}.dsse.json`;
        const { sha256, sizeBytes, head } = await hashFile(file);
        let statement;
        try {
          statement = imageStatement({
            sha256,
            subjectName: opts.name ?? basename(file),
            ...(opts.name === undefined ? {} : { imageName: opts.name }),
            format: opts.format ?? sniffFormat(head),
            sizeBytes,
            signedAt: new Date((deps.io.now ?? Date.now)()).toISOString(),
          });
        } catch (err) {
          throw new UsageError(`cannot sign ${file}: ${(err as Error).message} (use --name)`);
        }
        const envelope = signStatement(statement, privateKey);
        createFile(target, serializeEnvelope(envelope), 0o644);
        const keyid = keyIdOf(privateKey);
        const summary = {
          file,
          sha256,
          sizeBytes,
          format: statement.predicate.format,
          keyid,
          envelope: target,
        };
        if (out.json) out.printJson(summary);
        else {
          out.print(
            formatKeyValue([
              ['SHA-256', sha256],
              ['Size', String(sizeBytes)],
              ['Format', summary.format],
              ['Key id', keyid],
              ['Envelope', target],
            ]),
          );
        }
      },
    );

  image
    .command('verify-signature')
    .description(
      'check here that an envelope is a valid signature of this image file by this public key; ' +
        'exits 8 with the reason if not',
    )
    .argument('<file>', 'the image file', parsePath)
    .requiredOption('--envelope <envelope.json>', 'the DSSE envelope', parsePath)
    .requiredOption('--pub <public.pem>', 'the Ed25519 public key (SPKI PEM) you trust', parsePath)
    .action(async (file: string, opts: { envelope: string; pub: string }, cmd: Command) => {
      const out = output(deps, cmd);
      const key = trustedKey(readPublicKey(opts.pub));
      let envelope: Buffer;
      try {
        envelope = readSmallFile(opts.envelope, DSSE_MAX_ENVELOPE_BYTES);
      } catch (err) {
        if (err instanceof UsageError && /larger than/.test(err.message)) {
          throw new VerificationError(`image signature verification failed: ${err.message}`);
        }
        throw err;
      }
      const { sha256 } = await hashFile(file);
      const result = verifyImageSignature(envelope, sha256, [key]);
      if (out.json) {
        out.printJson(
          result.ok
            ? { ok: true, sha256, keyid: result.keyid, statement: result.statement }
            : { ok: false, sha256, reason: result.reason },
        );
      } else if (result.ok) {
        const p = result.statement.predicate;
        out.print(
          formatKeyValue([
            ['Result', 'OK'],
            ['SHA-256', sha256],
            ['Key id', result.keyid],
            ['Image name', p.imageName ?? '-'],
            ['Format', p.format],
            ['Signed at', p.signedAt],
          ]),
        );
      } else {
        out.print(formatKeyValue([['Result', 'FAILED']]));
      }
      if (!result.ok) throw new VerificationError(`image signature verification failed: ${result.reason}`);
    });
}
