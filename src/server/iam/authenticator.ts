/**
 * Authentication: password (+ TOTP) login with throttling, sessions with rotating single-use refresh
 * tokens, logout, API tokens, and turning a bearer token into a Principal on every request.
 *
 * Bearer tokens come in two kinds: session JWTs (short-lived, bound to a session row) and API tokens
 * (`rpt_` + 256 random bits, stored as SHA-256, limited to one tenant and a subset of permissions).
 * Refresh tokens (`rpr_`) are single use; presenting a rotated one again revokes the whole session
 * (refresh-token reuse means it was stolen).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  RateLimitedError,
  UnauthenticatedError,
} from '../../api/errors.js';
import type { ApiToken, LoginRequest, SessionRestriction, SessionTokens } from '../../api/iam.js';
import { isUuid, newId } from '../../common/ids.js';
import type { AuthConfig } from '../config.js';
import { isUniqueError, nowIso, type Db } from '../store/database.js';
import type { ApiTokensTable, UsersTable } from '../store/schema.js';
import { LoginThrottle } from './login-throttle.js';
import { burnVerification, verifyPassword } from './password-hasher.js';
import { ADMIN_ROLES, isPermission, type Permission } from './permissions.js';
import type { Principal } from './principal.js';
import type { RoleDirectory } from './role-directory.js';
import type { SessionTokenSigner } from './session-tokens.js';
import type { UserDirectory } from './user-directory.js';
import type { QuotaService } from '../quota/quota-service.js';

export const API_TOKEN_PREFIX = 'rpt_';
export const REFRESH_TOKEN_PREFIX = 'rpr_';
const DEFAULT_TOKEN_DAYS = 30;

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

function secretToken(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

/** What the audit log should say about a login attempt, whatever its outcome. */
export interface LoginAuditInfo {
  actorId: string | null;
  actor: string;
  detail: string | null;
}

/** One password login attempt, as the security event stream records it (never the password). */
export interface LoginAttempt {
  ok: boolean;
  username: string;
  sourceIp: string;
  /** Why it failed; null when it succeeded. */
  reason: 'unknown-user' | 'bad-password' | 'disabled' | 'bad-otp' | 'throttled' | null;
  userId: string | null;
  mfa: boolean;
}

export class Authenticator {
  readonly throttle: LoginThrottle;

  constructor(
    private readonly db: Db,
    private readonly users: UserDirectory,
    private readonly roles: RoleDirectory,
    private readonly signer: SessionTokenSigner,
    private readonly config: AuthConfig,
    private readonly quotas: QuotaService,
    /** Told of every login attempt (the security event stream: brute-force detection). */
    private readonly onLoginAttempt: (attempt: LoginAttempt) => void = () => undefined,
  ) {
    this.throttle = new LoginThrottle({
      accountThreshold: config.loginAccountThreshold,
      sourceThreshold: config.loginSourceThreshold,
      baseDelayMs: config.loginBaseDelayMs,
      maxDelayMs: config.loginMaxBackoffSeconds * 1000,
    });
  }

  /** True when a policy requires this user to use MFA (platform policy, or a tenant's, for admins). */
  async mfaRequired(user: UsersTable): Promise<boolean> {
    const policy = this.roles.policy;
    const platformAdmin = policy.rolesOf(user.id, null).some((r) => ADMIN_ROLES.has(r));
    const adminTenants = policy
      .tenantsOf(user.id)
      .filter((t) => policy.rolesOf(user.id, t).some((r) => ADMIN_ROLES.has(r)));
    if (this.config.requireMfaForAdmins && (platformAdmin || adminTenants.length > 0)) return true;
    if (adminTenants.length === 0) return false;
    const strict = await this.db
      .selectFrom('tenants')
      .select('id')
      .where('id', 'in', adminTenants)
      .where('requireMfaForAdmins', '=', 1)
      .executeTakeFirst();
    return strict !== undefined;
  }

  private async restrictionFor(user: UsersTable): Promise<SessionRestriction | null> {
    if (user.mustChangePassword === 1) return 'password-change';
    if (user.totpSecret === null && (await this.mfaRequired(user))) return 'mfa-enrolment';
    return null;
  }

  /**
   * Password (+ second factor) login. `audit` is filled in whatever happens, so the caller can
   * write exactly one audit record for the attempt.
   */
  async login(input: LoginRequest, source: string, audit: LoginAuditInfo): Promise<SessionTokens> {
    const account = input.username.toLowerCase();
    audit.actor = account.slice(0, 64);
    const gate = this.throttle.check(account, source);
    const failed = (reason: LoginAttempt['reason'], userId: string | null) =>
      this.onLoginAttempt({
        ok: false,
        username: account.slice(0, 64),
        sourceIp: source,
        reason,
        userId,
        mfa: false,
      });
    if (!gate.allowed) {
      failed('throttled', null);
      audit.detail = `throttled (${gate.scope})`;
      throw new RateLimitedError(
        'too many failed logins; try again later',
        Math.max(1, Math.ceil(gate.retryAfterMs / 1000)),
      );
    }
    const user = await this.users.find(account);
    try {
      if (!user) {
        await burnVerification(input.password);
        audit.detail = 'unknown user';
        failed('unknown-user', null);
        throw new UnauthenticatedError('invalid username or password');
      }
      audit.actorId = user.id;
      const passwordOk = await verifyPassword(user.passwordHash, input.password);
      if (!passwordOk) {
        audit.detail = 'wrong password';
        failed('bad-password', user.id);
        throw new UnauthenticatedError('invalid username or password');
      }
      if (user.disabled === 1) {
        audit.detail = 'user disabled';
        failed('disabled', user.id);
        throw new UnauthenticatedError('invalid username or password');
      }
      try {
        await this.users.checkSecondFactor(user, input.totp, input.recoveryCode);
      } catch (error) {
        audit.detail = (error as Error).message;
        failed('bad-otp', user.id);
        throw error;
      }
    } catch (error) {
      this.throttle.recordFailure(account, source);
      throw error;
    }
    this.throttle.recordSuccess(account, source);
    const mfa = user.totpSecret !== null;
    this.onLoginAttempt({
      ok: true,
      username: account.slice(0, 64),
      sourceIp: source,
      reason: null,
      userId: user.id,
      mfa,
    });
    audit.detail = mfa ? (input.recoveryCode !== undefined ? 'mfa: recovery code' : 'mfa: totp') : null;
    return this.openSession(user, source, mfa);
  }

  /** Creates a session row and its first token pair. */
  async openSession(user: UsersTable, source: string, mfa: boolean): Promise<SessionTokens> {
    const id = newId();
    const refreshToken = secretToken(REFRESH_TOKEN_PREFIX);
    const now = Date.now();
    const refreshExpiresAt = new Date(now + this.config.refreshTtlSeconds * 1000).toISOString();
    const restriction = await this.restrictionFor(user);
    await this.db
      .insertInto('sessions')
      .values({
        id,
        userId: user.id,
        refreshSha256: sha256(refreshToken),
        previousRefreshSha256: null,
        restriction,
        mfa: mfa ? 1 : 0,
        source: source.slice(0, 64),
        createdAt: new Date(now).toISOString(),
        expiresAt: refreshExpiresAt,
        lastUsedAt: new Date(now).toISOString(),
        revokedAt: null,
      })
      .execute();
    const access = await this.signer.issue(
      { userId: user.id, sessionId: id },
      this.config.sessionTtlSeconds,
      now,
    );
    return {
      token: access.token,
      expiresAt: access.expiresAt.toISOString(),
      refreshToken,
      refreshExpiresAt,
      restriction,
      user: { id: user.id, username: user.username },
    };
  }

  /** Exchanges a refresh token for a new pair (rotation). Reuse of a rotated token revokes the session. */
  async refresh(refreshToken: string, audit: LoginAuditInfo): Promise<SessionTokens> {
    const hash = sha256(refreshToken);
    const session = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where((eb) => eb.or([eb('refreshSha256', '=', hash), eb('previousRefreshSha256', '=', hash)]))
      .executeTakeFirst();
    if (!session) {
      audit.detail = 'unknown refresh token';
      throw new UnauthenticatedError('invalid or expired refresh token');
    }
    audit.actorId = session.userId;
    const user = await this.users.find(session.userId);
    if (user) audit.actor = user.username;
    if (session.previousRefreshSha256 === hash) {
      await this.db
        .updateTable('sessions')
        .set({ revokedAt: nowIso() })
        .where('id', '=', session.id)
        .execute();
      audit.detail = 'refresh token reused: session revoked';
      throw new UnauthenticatedError('invalid or expired refresh token');
    }
    if (
      session.revokedAt !== null ||
      Date.parse(session.expiresAt) <= Date.now() ||
      !user ||
      user.disabled === 1
    ) {
      audit.detail = 'session revoked or expired';
      throw new UnauthenticatedError('invalid or expired refresh token');
    }
    const next = secretToken(REFRESH_TOKEN_PREFIX);
    const rotated = await this.db
      .updateTable('sessions')
      .set({ refreshSha256: sha256(next), previousRefreshSha256: hash, lastUsedAt: nowIso() })
      .where('id', '=', session.id)
      .where('refreshSha256', '=', hash)
      .executeTakeFirst();
    if (Number(rotated.numUpdatedRows) !== 1)
      throw new UnauthenticatedError('invalid or expired refresh token');
    const restriction = await this.restrictionFor(user);
    if (restriction !== session.restriction)
      await this.db.updateTable('sessions').set({ restriction }).where('id', '=', session.id).execute();
    const access = await this.signer.issue(
      { userId: user.id, sessionId: session.id },
      this.config.sessionTtlSeconds,
    );
    return {
      token: access.token,
      expiresAt: access.expiresAt.toISOString(),
      refreshToken: next,
      refreshExpiresAt: session.expiresAt,
      restriction,
      user: { id: user.id, username: user.username },
    };
  }

  async logout(principal: Principal): Promise<void> {
    if (principal.sessionId)
      await this.db
        .updateTable('sessions')
        .set({ revokedAt: nowIso() })
        .where('id', '=', principal.sessionId)
        .execute();
    else if (principal.token)
      await this.db
        .updateTable('apiTokens')
        .set({ revokedAt: nowIso() })
        .where('id', '=', principal.token.id)
        .execute();
  }

  /** Turns a bearer token into a Principal, or throws UnauthenticatedError (one message for all causes). */
  async authenticate(bearer: string): Promise<Principal> {
    const fail = () => new UnauthenticatedError('invalid or expired token');
    if (bearer.startsWith(API_TOKEN_PREFIX)) {
      const row = await this.db
        .selectFrom('apiTokens')
        .innerJoin('users', 'users.id', 'apiTokens.userId')
        .select([
          'apiTokens.id',
          'apiTokens.name',
          'apiTokens.tenantId',
          'apiTokens.permissions',
          'apiTokens.expiresAt',
          'apiTokens.revokedAt',
          'apiTokens.lastUsedAt',
          'users.id as userId',
          'users.username',
          'users.disabled',
        ])
        .where('apiTokens.tokenSha256', '=', sha256(bearer))
        .executeTakeFirst();
      if (!row || row.revokedAt !== null || row.disabled === 1 || Date.parse(row.expiresAt) <= Date.now())
        throw fail();
      // last-used is kept to the minute: no write per request.
      const now = Date.now();
      if (!row.lastUsedAt || now - Date.parse(row.lastUsedAt) > 60_000)
        await this.db
          .updateTable('apiTokens')
          .set({ lastUsedAt: new Date(now).toISOString() })
          .where('id', '=', row.id)
          .execute();
      return {
        userId: row.userId,
        username: row.username,
        via: 'token',
        sessionId: null,
        token: {
          id: row.id,
          name: row.name,
          tenantId: row.tenantId,
          permissions: new Set((JSON.parse(row.permissions) as string[]).filter(isPermission)),
        },
        restriction: null,
        mfa: false,
      };
    }
    const claims = await this.signer.verify(bearer);
    const row = await this.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.userId')
      .select([
        'sessions.id',
        'sessions.userId',
        'sessions.restriction',
        'sessions.mfa',
        'sessions.expiresAt',
        'sessions.revokedAt',
        'users.username',
        'users.disabled',
      ])
      .where('sessions.id', '=', claims.sessionId)
      .executeTakeFirst();
    if (
      !row ||
      row.userId !== claims.userId ||
      row.revokedAt !== null ||
      row.disabled === 1 ||
      Date.parse(row.expiresAt) <= Date.now()
    )
      throw fail();
    return {
      userId: row.userId,
      username: row.username,
      via: 'session',
      sessionId: row.id,
      token: null,
      restriction: (row.restriction as SessionRestriction | null) ?? null,
      mfa: row.mfa === 1,
    };
  }

  // --- API tokens -----------------------------------------------------------------------------------

  apiTokenToApi(row: ApiTokensTable, tenantName: string): ApiToken {
    return {
      id: row.id,
      name: row.name,
      tenant: { id: row.tenantId, name: tenantName },
      permissions: JSON.parse(row.permissions) as string[],
      createdAt: row.createdAt,
      expiresAt: row.expiresAt,
      lastUsedAt: row.lastUsedAt,
      revoked: row.revokedAt !== null,
    };
  }

  async createApiToken(
    principal: Principal,
    tenant: { id: string; name: string },
    input: { name: string; permissions?: string[]; expiresInDays?: number },
    held: ReadonlySet<Permission>,
  ): Promise<{ token: string; apiToken: ApiToken }> {
    const requested = input.permissions ?? [...held];
    const unknown = requested.filter((p) => !isPermission(p));
    if (unknown.length > 0)
      throw new InvalidInputError(`unknown permissions: ${unknown.slice(0, 8).join(', ')}`);
    const missing = requested.filter((p) => !held.has(p as Permission));
    if (missing.length > 0)
      throw new ForbiddenError(
        `a token cannot carry permissions you do not hold: ${missing.slice(0, 8).join(', ')}`,
      );
    const token = secretToken(API_TOKEN_PREFIX);
    const now = Date.now();
    const row: ApiTokensTable = {
      id: newId(),
      userId: principal.userId,
      tenantId: tenant.id,
      name: input.name,
      tokenSha256: sha256(token),
      permissions: JSON.stringify([...new Set(requested)].sort()),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + (input.expiresInDays ?? DEFAULT_TOKEN_DAYS) * 86_400_000).toISOString(),
      lastUsedAt: null,
      revokedAt: null,
    };
    try {
      await this.db.transaction().execute(async (trx) => {
        await this.quotas.admit(trx, tenant.id, { apiTokens: 1 });
        await trx.insertInto('apiTokens').values(row).execute();
      });
    } catch (error) {
      if (isUniqueError(error)) throw new ConflictError(`you already have a token named ${input.name}`);
      throw error;
    }
    return { token, apiToken: this.apiTokenToApi(row, tenant.name) };
  }

  async listApiTokens(userId: string): Promise<ApiToken[]> {
    const rows = await this.db
      .selectFrom('apiTokens')
      .innerJoin('tenants', 'tenants.id', 'apiTokens.tenantId')
      .selectAll('apiTokens')
      .select('tenants.name as tenantName')
      .where('apiTokens.userId', '=', userId)
      .orderBy('apiTokens.createdAt')
      .execute();
    return rows.map((r) => this.apiTokenToApi(r, r.tenantName));
  }

  async revokeApiToken(userId: string, id: string): Promise<void> {
    if (!isUuid(id)) throw new NotFoundError('API token');
    const result = await this.db
      .updateTable('apiTokens')
      .set({ revokedAt: nowIso() })
      .where('id', '=', id)
      .where('userId', '=', userId)
      .where('revokedAt', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) {
      const exists = await this.db
        .selectFrom('apiTokens')
        .select('id')
        .where('id', '=', id)
        .where('userId', '=', userId)
        .executeTakeFirst();
      if (!exists) throw new NotFoundError('API token');
    }
  }
}
