/**
 * The security event stream as the API shows it (GET /v1/security/events, GET
 * /v1/platform/security/events). The stable schema of each kind is documented in
 * src/server/security/security-events.ts.
 */
import { Type, type Static } from 'typebox';
import { Id, Timestamp } from './common.js';

export const SECURITY_SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type SecuritySeverity = (typeof SECURITY_SEVERITIES)[number];

/** Event kinds: dotted lowercase words, e.g. `image.quarantined`. */
export const SECURITY_EVENT_KIND_PATTERN = '^[a-z0-9][a-z0-9._:-]{0,63}$';

export const SecuritySeveritySchema = Type.Union([
  Type.Literal('info'),
  Type.Literal('low'),
  Type.Literal('medium'),
  Type.Literal('high'),
  Type.Literal('critical'),
]);

export const SecurityEvent = Type.Object(
  {
    id: Id,
    /** Strictly increasing over the whole stream (all tenants); tail with `after`. */
    seq: Type.Integer(),
    occurredAt: Timestamp,
    kind: Type.String(),
    severity: SecuritySeveritySchema,
    /** The tenant the event belongs to; null for platform-wide events. */
    tenantId: Type.Union([Type.String(), Type.Null()]),
    /** What the event is about, e.g. `image`, `vm`, `user`. */
    subjectType: Type.String(),
    subjectId: Type.Union([Type.String(), Type.Null()]),
    summary: Type.String(),
    /** Kind-specific fields (see the schema per kind). */
    detail: Type.Record(Type.String(), Type.Unknown()),
  },
  { $id: 'SecurityEvent' },
);
export type SecurityEvent = Static<typeof SecurityEvent>;

export const SecurityEventQuery = Type.Object(
  {
    /**
     * On the tenant route: the request tenant (as everywhere). On the platform route: narrows the
     * stream to this tenant (name or id).
     */
    tenant: Type.Optional(Type.String({ maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
    kind: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: SECURITY_EVENT_KIND_PATTERN })),
    /** Only events with seq greater than this, oldest first (tailing); without it: newest first. */
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
    /** 1..1000, default 100. */
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);
export type SecurityEventQuery = Static<typeof SecurityEventQuery>;

export const SecurityEventList = Type.Object({
  items: Type.Array(SecurityEvent),
});
export type SecurityEventList = Static<typeof SecurityEventList>;
