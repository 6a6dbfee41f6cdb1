/** Who is calling: the result of authentication, attached to every authenticated request. */
import type { SessionRestriction } from '../../api/iam.js';
import type { Permission } from './permissions.js';

export interface Principal {
  userId: string;
  username: string;
  via: 'session' | 'token';
  sessionId: string | null;
  /** For API tokens: the one tenant the token acts in and the permissions it was limited to. */
  token: { id: string; name: string; tenantId: string; permissions: ReadonlySet<Permission> } | null;
  /** A session that may only lift its restriction (change the password, enrol MFA). */
  restriction: SessionRestriction | null;
  mfa: boolean;
}

/** How a principal appears in audit records: the username, and the token name for API tokens. */
export function auditActor(principal: Principal): string {
  return principal.token ? `${principal.username}/token:${principal.token.name}` : principal.username;
}
