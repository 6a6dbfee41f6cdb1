/**
 * Users: creation under the password policy, argon2id hashes, disable/enable, password change and
 * admin reset, TOTP enrolment with one-time recovery codes. Every change that weakens trust in the
 * user's existing credentials (password change or reset, disable, delete) revokes all of the user's
 * sessions and API tokens in the same transaction.
 */
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  UnauthenticatedError,
} from '../../api/errors.js';
import type { User } from '../../api/iam.js';
import { isUuid, newId } from '../../common/ids.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { UsersTable } from '../store/schema.js';
import { checkPasswordPolicy } from './password-policy.js';
import { hashPassword, verifyPassword } from './password-hasher.js';
import { generateRecoveryCodes, hashRecoveryCode } from './recovery-codes.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';

export function userToApi(row: UsersTable): User {
  return {
    id: row.id,
    username: row.username,
    disabled: row.disabled === 1,
    mustChangePassword: row.mustChangePassword === 1,
    mfaEnabled: row.totpSecret !== null,
    createdAt: row.createdAt,
    passwordChangedAt: row.passwordChangedAt,
  };
}

export class UserDirectory {
  constructor(private readonly db: Db) {}

  async list(): Promise<UsersTable[]> {
    return this.db.selectFrom('users').selectAll().orderBy('username').execute();
  }

  async find(ref: string): Promise<UsersTable | null> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where(isUuid(ref) ? 'id' : 'username', '=', ref.toLowerCase())
      .executeTakeFirst();
    return row ?? null;
  }

  async get(ref: string): Promise<UsersTable> {
    const row = await this.find(ref);
    if (!row) throw new NotFoundError('user');
    return row;
  }

  async create(input: {
    username: string;
    password: string;
    mustChangePassword?: boolean;
  }): Promise<UsersTable> {
    checkPasswordPolicy(input.password, input.username);
    const now = nowIso();
    const row: UsersTable = {
      id: newId(),
      username: input.username,
      passwordHash: await hashPassword(input.password),
      mustChangePassword: input.mustChangePassword === false ? 0 : 1,
      disabled: 0,
      totpSecret: null,
      totpPendingSecret: null,
      totpLastStep: 0,
      passwordChangedAt: now,
      createdAt: now,
    };
    try {
      await this.db.insertInto('users').values(row).execute();
    } catch (error) {
      if (isUniqueError(error)) throw new ConflictError(`user ${input.username} already exists`);
      throw error;
    }
    return row;
  }

  /** Revokes every session and API token of a user (inside `trx` when given). */
  async revokeAll(userId: string, db: Db = this.db): Promise<void> {
    const now = nowIso();
    await db
      .updateTable('sessions')
      .set({ revokedAt: now })
      .where('userId', '=', userId)
      .where('revokedAt', 'is', null)
      .execute();
    await db
      .updateTable('apiTokens')
      .set({ revokedAt: now })
      .where('userId', '=', userId)
      .where('revokedAt', 'is', null)
      .execute();
  }

  async setDisabled(id: string, disabled: boolean): Promise<UsersTable> {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('users')
        .set({ disabled: disabled ? 1 : 0 })
        .where('id', '=', id)
        .execute();
      if (disabled) await this.revokeAll(id, trx);
    });
    return this.get(id);
  }

  private async setPassword(id: string, passwordHash: string, mustChange: boolean): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('users')
        .set({ passwordHash, mustChangePassword: mustChange ? 1 : 0, passwordChangedAt: nowIso() })
        .where('id', '=', id)
        .execute();
      await this.revokeAll(id, trx);
    });
  }

  /** An administrator sets a new password; the user must change it at the next login. */
  async resetPassword(id: string, password: string): Promise<void> {
    const user = await this.get(id);
    checkPasswordPolicy(password, user.username);
    await this.setPassword(id, await hashPassword(password), true);
  }

  /** The user changes their own password (the current one is required). */
  async changePassword(id: string, current: string, next: string): Promise<void> {
    const user = await this.get(id);
    if (!(await verifyPassword(user.passwordHash, current)))
      throw new ForbiddenError('the current password is not correct');
    if (current === next) throw new InvalidInputError('the new password must differ from the current one');
    checkPasswordPolicy(next, user.username);
    await this.setPassword(id, await hashPassword(next), false);
  }

  async delete(id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await this.revokeAll(id, trx);
      await trx.deleteFrom('users').where('id', '=', id).execute();
    });
  }

  /** Starts (or restarts) TOTP enrolment: a new pending secret; MFA is on only once verified. */
  async startTotp(id: string): Promise<{ secret: string; uri: string }> {
    const user = await this.get(id);
    if (user.totpSecret) throw new ConflictError('TOTP is already enabled; disable it first to enrol again');
    const secret = newTotpSecret();
    await this.db.updateTable('users').set({ totpPendingSecret: secret }).where('id', '=', id).execute();
    return { secret, uri: totpUri(secret, user.username) };
  }

  /** Verifies the first code of a pending enrolment, turns MFA on and returns fresh recovery codes. */
  async confirmTotp(id: string, code: string): Promise<string[]> {
    const user = await this.get(id);
    if (!user.totpPendingSecret) throw new ConflictError('no TOTP enrolment is pending; start one first');
    const result = verifyTotp(user.totpPendingSecret, code, 0);
    if (!result.ok) throw new InvalidInputError('the TOTP code is not valid');
    const codes = generateRecoveryCodes();
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('users')
        .set({ totpSecret: user.totpPendingSecret, totpPendingSecret: null, totpLastStep: result.step })
        .where('id', '=', id)
        .execute();
      await trx.deleteFrom('recoveryCodes').where('userId', '=', id).execute();
      await trx
        .insertInto('recoveryCodes')
        .values(
          codes.map((c) => ({ id: newId(), userId: id, codeSha256: hashRecoveryCode(c), usedAt: null })),
        )
        .execute();
    });
    return codes;
  }

  async disableTotp(id: string, password: string, code: string): Promise<void> {
    const user = await this.get(id);
    if (!user.totpSecret) throw new ConflictError('TOTP is not enabled');
    if (!(await verifyPassword(user.passwordHash, password)))
      throw new ForbiddenError('the password is not correct');
    await this.checkSecondFactor(user, code, undefined);
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable('users')
        .set({ totpSecret: null, totpPendingSecret: null })
        .where('id', '=', id)
        .execute();
      await trx.deleteFrom('recoveryCodes').where('userId', '=', id).execute();
    });
  }

  /**
   * Checks a TOTP code (no replay: each time step is accepted once) or a one-time recovery code.
   * Throws UnauthenticatedError naming what is missing or wrong.
   */
  async checkSecondFactor(
    user: UsersTable,
    totp: string | undefined,
    recoveryCode: string | undefined,
  ): Promise<void> {
    if (!user.totpSecret) return;
    if (totp !== undefined) {
      const result = verifyTotp(user.totpSecret, totp, user.totpLastStep);
      if (!result.ok)
        throw new UnauthenticatedError(
          result.reason === 'replayed' ? 'TOTP code already used' : 'invalid TOTP code',
        );
      // Conditional update: two concurrent logins with the same code cannot both pass.
      const updated = await this.db
        .updateTable('users')
        .set({ totpLastStep: result.step })
        .where('id', '=', user.id)
        .where('totpLastStep', '<', result.step)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) throw new UnauthenticatedError('TOTP code already used');
      return;
    }
    if (recoveryCode !== undefined) {
      const used = await this.db
        .updateTable('recoveryCodes')
        .set({ usedAt: nowIso() })
        .where('userId', '=', user.id)
        .where('codeSha256', '=', hashRecoveryCode(recoveryCode))
        .where('usedAt', 'is', null)
        .executeTakeFirst();
      if (Number(used.numUpdatedRows) !== 1) throw new UnauthenticatedError('invalid recovery code');
      return;
    }
    throw new UnauthenticatedError('TOTP code required');
  }
}
