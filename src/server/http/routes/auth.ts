/** /v1/auth: login, refresh, logout, whoami, password change and TOTP enrolment. */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema, NoContent } from '../../../api/common.js';
import {
  LoginRequest,
  PasswordChange,
  RecoveryCodes,
  RefreshRequest,
  SessionTokens,
  TenantQuery,
  TotpDisable,
  TotpEnrolment,
  TotpVerify,
  WhoAmI,
} from '../../../api/iam.js';
import type { LoginAuditInfo } from '../../iam/authenticator.js';
import { requirePrincipal } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 409: ErrorSchema, 429: ErrorSchema };
const NoBody = Type.Optional(Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })]));

export async function authRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/v1/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'Log in with username and password (and a TOTP or recovery code once MFA is on)',
        security: [],
        body: LoginRequest,
        response: { 200: SessionTokens, ...errors },
      },
    },
    async (request) => {
      const audit: LoginAuditInfo = { actorId: null, actor: 'anonymous', detail: null };
      try {
        return await ctx.authenticator.login(request.body, request.ip, audit);
      } finally {
        Object.assign(request.auditInfo!, {
          actorId: audit.actorId,
          actor: audit.actor,
          detail: audit.detail,
        });
      }
    },
  );

  app.post(
    '/v1/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'Exchange a refresh token for a new token pair (the refresh token is single use)',
        security: [],
        body: RefreshRequest,
        response: { 200: SessionTokens, ...errors },
      },
    },
    async (request) => {
      const audit: LoginAuditInfo = { actorId: null, actor: 'anonymous', detail: null };
      try {
        return await ctx.authenticator.refresh(request.body.refreshToken, audit);
      } finally {
        Object.assign(request.auditInfo!, {
          actorId: audit.actorId,
          actor: audit.actor,
          detail: audit.detail,
        });
      }
    },
  );

  app.post(
    '/v1/auth/logout',
    { schema: { tags: ['auth'], summary: 'End this session (or revoke this API token)', body: NoBody } },
    async (request, reply) => {
      await ctx.authenticator.logout(requirePrincipal(request));
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/auth/whoami',
    {
      schema: {
        tags: ['auth'],
        summary: 'Who the caller is, their tenants and roles, and what they may do in the chosen tenant',
        querystring: TenantQuery,
        response: { 200: WhoAmI, ...errors },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const policy = ctx.roles.policy;
      const user = await ctx.users.get(principal.userId);
      const memberships = await ctx.tenants.list(policy.tenantsOf(principal.userId));
      let tenant = request.tenant;
      if (!tenant && !principal.token && memberships.length === 1) tenant = memberships[0]!;
      if (!tenant && principal.token) tenant = await ctx.tenants.find(principal.token.tenantId);
      let permissions: string[] = [];
      if (tenant) {
        const held = policy.tenantPermissions(principal.userId, tenant.id);
        permissions = [...held].filter((p) => !principal.token || principal.token.permissions.has(p));
      }
      const platform = [...policy.platformPermissions(principal.userId)].filter(
        (p) => p.startsWith('platform:') && (!principal.token || principal.token.permissions.has(p)),
      );
      return {
        user: { id: user.id, username: user.username, mfaEnabled: user.totpSecret !== null },
        via: principal.via,
        restriction: principal.restriction,
        platformRoles: [...policy.rolesOf(principal.userId, null)],
        tenants: memberships.map((t) => ({
          tenant: { id: t.id, name: t.name },
          roles: [...policy.rolesOf(principal.userId, t.id)],
        })),
        tenant: tenant ? { id: tenant.id, name: tenant.name } : null,
        permissions: [...permissions, ...platform].sort(),
      };
    },
  );

  app.post(
    '/v1/auth/password',
    {
      schema: {
        tags: ['auth'],
        summary: 'Change your password; every other session and API token of yours is revoked',
        body: PasswordChange,
        response: { 200: SessionTokens, ...errors },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      await ctx.users.changePassword(
        principal.userId,
        request.body.currentPassword,
        request.body.newPassword,
      );
      const user = await ctx.users.get(principal.userId);
      return ctx.authenticator.openSession(user, request.ip, principal.mfa);
    },
  );

  app.post(
    '/v1/auth/mfa/totp',
    {
      schema: {
        tags: ['auth'],
        summary: 'Start TOTP enrolment: a secret and an otpauth:// URI for an authenticator app',
        body: NoBody,
        response: { 200: TotpEnrolment, ...errors },
      },
    },
    async (request) => ctx.users.startTotp(requirePrincipal(request).userId),
  );

  app.post(
    '/v1/auth/mfa/totp/verify',
    {
      schema: {
        tags: ['auth'],
        summary: 'Confirm TOTP enrolment with a first code; answers one-time recovery codes (shown once)',
        body: TotpVerify,
        response: { 200: RecoveryCodes, ...errors },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const recoveryCodes = await ctx.users.confirmTotp(principal.userId, request.body.code);
      // An MFA-enrolment restriction is lifted for this session now that MFA is on.
      if (principal.sessionId && principal.restriction === 'mfa-enrolment')
        await ctx.db
          .updateTable('sessions')
          .set({ restriction: null, mfa: 1 })
          .where('id', '=', principal.sessionId)
          .execute();
      return { recoveryCodes };
    },
  );

  app.post(
    '/v1/auth/mfa/totp/disable',
    {
      schema: {
        tags: ['auth'],
        summary: 'Turn TOTP off (needs the password and a current code)',
        body: TotpDisable,
        response: { 204: NoContent, ...errors },
      },
    },
    async (request, reply) => {
      await ctx.users.disableTotp(requirePrincipal(request).userId, request.body.password, request.body.code);
      return reply.status(204).send(null);
    },
  );
}
