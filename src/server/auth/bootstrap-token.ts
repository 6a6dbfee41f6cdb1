/**
 * The single bootstrap admin token that guards the API until the identity service exists. Taken from
 * RAMPART_BOOTSTRAP_TOKEN (unattended installs) or generated on first start and printed once; only its
 * SHA-256 is stored (the token has 256 bits of entropy, so a fast hash is enough).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '../../api/errors.js';
import { newId } from '../../common/ids.js';
import { nowIso, type Db } from '../store/database.js';

const NAME = 'bootstrap';
export const TOKEN_PREFIX = 'rpt_';
const MIN_TOKEN_LENGTH = 24;

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export interface BootstrapResult {
  /** The new token when one was generated now (print it once); null otherwise. */
  generated: string | null;
}

async function storeHash(db: Db, hash: string): Promise<void> {
  await db
    .insertInto('apiTokens')
    .values({ id: newId(), name: NAME, tokenSha256: hash, createdAt: nowIso() })
    .onConflict((oc) => oc.column('name').doUpdateSet({ tokenSha256: hash, createdAt: nowIso() }))
    .execute();
}

export async function ensureBootstrapToken(db: Db, fromEnv: string | undefined): Promise<BootstrapResult> {
  if (fromEnv !== undefined) {
    if (fromEnv.length < MIN_TOKEN_LENGTH || /\s/.test(fromEnv)) {
      throw new InvalidInputError(
        `RAMPART_BOOTSTRAP_TOKEN must be at least ${MIN_TOKEN_LENGTH} characters without spaces`,
      );
    }
    await storeHash(db, digest(fromEnv).toString('hex'));
    return { generated: null };
  }
  const existing = await db.selectFrom('apiTokens').select('id').where('name', '=', NAME).executeTakeFirst();
  if (existing) return { generated: null };
  const token = generateToken();
  await storeHash(db, digest(token).toString('hex'));
  return { generated: token };
}

/** Replaces the bootstrap token (operator recovery: `rampart server --reset-bootstrap-token`). */
export async function resetBootstrapToken(db: Db): Promise<string> {
  const token = generateToken();
  await storeHash(db, digest(token).toString('hex'));
  return token;
}

export class TokenVerifier {
  private hashes: Buffer[] = [];

  constructor(private readonly db: Db) {}

  async load(): Promise<void> {
    const rows = await this.db.selectFrom('apiTokens').select('tokenSha256').execute();
    this.hashes = rows.map((r) => Buffer.from(r.tokenSha256, 'hex'));
  }

  verify(presented: string): boolean {
    if (presented.length === 0 || presented.length > 512) return false;
    const candidate = digest(presented);
    let match = false;
    for (const hash of this.hashes)
      if (hash.length === candidate.length && timingSafeEqual(hash, candidate)) match = true;
    return match;
  }
}
