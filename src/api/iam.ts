/**
 * Identity and access: tenants, users, roles, role bindings (members), sessions, API tokens and MFA.
 * Request bodies never carry server-owned fields (tenant ids, role lists of the caller, hashes): the
 * tenant of a request comes from its path or `?tenant=`, never from a body.
 */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

export const USERNAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$';
export const Username = Type.String({ pattern: USERNAME_PATTERN, minLength: 1, maxLength: 64 });
/** Length is checked by the password policy with a clear message; the schema only bounds the size. */
export const Password = Type.String({ minLength: 1, maxLength: 256 });
export const PERMISSION_PATTERN = '^[a-z]+(:[a-z]+){1,2}$';
export const PermissionName = Type.String({ pattern: PERMISSION_PATTERN, maxLength: 64 });
export const RoleName = Name;
export const TotpCode = Type.String({ pattern: '^[0-9]{6}$' });
export const RecoveryCode = Type.String({ pattern: '^[A-Za-z0-9 -]{8,40}$' });

/** `?tenant=<name or id>`: the tenant a request acts in (default: the caller's only tenant). */
export const TenantQuery = Type.Object(
  {
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
  },
  { additionalProperties: false },
);

export const SESSION_RESTRICTIONS = ['password-change', 'mfa-enrolment'] as const;
export type SessionRestriction = (typeof SESSION_RESTRICTIONS)[number];
export const SessionRestrictionSchema = Type.Union([
  Type.Literal('password-change'),
  Type.Literal('mfa-enrolment'),
  Type.Null(),
]);

export const LoginRequest = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64 }),
    password: Password,
    totp: Type.Optional(TotpCode),
    recoveryCode: Type.Optional(RecoveryCode),
  },
  { additionalProperties: false },
);
export type LoginRequest = Static<typeof LoginRequest>;

export const SessionTokens = Type.Object({
  /** Short-lived bearer token (a JWT bound to a server-side session). */
  token: Type.String(),
  expiresAt: Timestamp,
  /** Exchanged at POST /v1/auth/refresh for a new pair; single use. */
  refreshToken: Type.String(),
  refreshExpiresAt: Timestamp,
  /** Non-null: the session may only do what lifts the restriction (change password, enrol MFA). */
  restriction: SessionRestrictionSchema,
  user: Type.Object({ id: Id, username: Username }),
});
export type SessionTokens = Static<typeof SessionTokens>;

export const RefreshRequest = Type.Object(
  { refreshToken: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

export const PasswordChange = Type.Object(
  { currentPassword: Password, newPassword: Password },
  { additionalProperties: false },
);

export const TotpEnrolment = Type.Object({
  secret: Type.String(),
  /** otpauth://totp/... for authenticator apps (QR code). */
  uri: Type.String(),
});
export const TotpVerify = Type.Object({ code: TotpCode }, { additionalProperties: false });
export const RecoveryCodes = Type.Object({ recoveryCodes: Type.Array(Type.String()) });
export const TotpDisable = Type.Object(
  { password: Password, code: TotpCode },
  { additionalProperties: false },
);

export const MembershipView = Type.Object({
  tenant: Type.Object({ id: Id, name: Name }),
  roles: Type.Array(Type.String()),
});

export const WhoAmI = Type.Object({
  user: Type.Object({ id: Id, username: Username, mfaEnabled: Type.Boolean() }),
  via: Type.Union([Type.Literal('session'), Type.Literal('token')]),
  restriction: SessionRestrictionSchema,
  platformRoles: Type.Array(Type.String()),
  tenants: Type.Array(MembershipView),
  /** The tenant this request resolved to (null when none could be chosen) and what the caller may do there. */
  tenant: Type.Union([Type.Object({ id: Id, name: Name }), Type.Null()]),
  permissions: Type.Array(Type.String()),
});
export type WhoAmI = Static<typeof WhoAmI>;

export const Tenant = Type.Object({
  id: Id,
  name: Name,
  requireMfaForAdmins: Type.Boolean(),
  /** The tenant's guests may run hypervisors (off unless a platform admin allows it). */
  allowNestedVirtualization: Type.Boolean(),
  /** The tenant's VMs never share a host with another tenant's (set by a platform admin). */
  dedicatedHosts: Type.Boolean(),
  /** New volumes may be cloned from snapshots (a tenant admin may forbid it). */
  allowClones: Type.Boolean(),
  createdAt: Timestamp,
});
export type Tenant = Static<typeof Tenant>;
export const TenantCreate = Type.Object(
  { name: Name, requireMfaForAdmins: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);
export const TenantUpdate = Type.Object(
  {
    requireMfaForAdmins: Type.Optional(Type.Boolean()),
    /** Turning it on is a platform admin's decision; a tenant admin may only turn it off. */
    allowNestedVirtualization: Type.Optional(Type.Boolean()),
    /** Platform admins only, both ways (it changes where other tenants' VMs may go). */
    dedicatedHosts: Type.Optional(Type.Boolean()),
    /** Whether volumes may be cloned from snapshots in this tenant (tenant admins decide). */
    allowClones: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const User = Type.Object({
  id: Id,
  username: Username,
  disabled: Type.Boolean(),
  mustChangePassword: Type.Boolean(),
  mfaEnabled: Type.Boolean(),
  createdAt: Timestamp,
  passwordChangedAt: Timestamp,
});
export type User = Static<typeof User>;
export const UserCreate = Type.Object(
  {
    username: Username,
    password: Password,
    /** Default true: the user must choose a new password at first login. */
    mustChangePassword: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export const UserUpdate = Type.Object(
  { disabled: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);
export const PasswordReset = Type.Object({ password: Password }, { additionalProperties: false });

export const Member = Type.Object({
  user: Type.Object({ id: Id, username: Username }),
  roles: Type.Array(Type.String()),
});
export const MemberAdd = Type.Object(
  { user: Type.String({ minLength: 1, maxLength: 64 }), role: RoleName },
  { additionalProperties: false },
);
export const MemberParams = Type.Object(
  { ref: Type.String({ minLength: 1, maxLength: 63 }), user: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
export const PlatformMemberParams = Type.Object(
  { user: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);
export const RoleQuery = Type.Object(
  { role: Type.Optional(RoleName), tenant: Type.Optional(Type.String({ maxLength: 63 })) },
  { additionalProperties: false },
);

export const Role = Type.Object({
  name: RoleName,
  builtIn: Type.Boolean(),
  description: Type.String(),
  permissions: Type.Array(Type.String()),
});
export type Role = Static<typeof Role>;
export const RoleCreate = Type.Object(
  {
    name: RoleName,
    description: Type.Optional(Type.String({ maxLength: 200 })),
    permissions: Type.Array(PermissionName, { minItems: 1, maxItems: 64, uniqueItems: true }),
  },
  { additionalProperties: false },
);

export const ApiToken = Type.Object({
  id: Id,
  name: Name,
  tenant: Type.Object({ id: Id, name: Name }),
  permissions: Type.Array(Type.String()),
  createdAt: Timestamp,
  expiresAt: Timestamp,
  lastUsedAt: Type.Union([Timestamp, Type.Null()]),
  revoked: Type.Boolean(),
});
export type ApiToken = Static<typeof ApiToken>;
export const ApiTokenCreate = Type.Object(
  {
    name: Name,
    /** A subset of what the creator holds in the tenant; default: all of it. */
    permissions: Type.Optional(Type.Array(PermissionName, { minItems: 1, maxItems: 64, uniqueItems: true })),
    /** Default 30, at most 365. */
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 365 })),
  },
  { additionalProperties: false },
);
/** Returned once, at creation: the secret is never shown again. */
export const ApiTokenCreated = Type.Object({ token: Type.String(), apiToken: ApiToken });
