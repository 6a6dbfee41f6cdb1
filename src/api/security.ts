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

export const AlertStatus = Type.Union([
  Type.Literal('open'),
  Type.Literal('acknowledged'),
  Type.Literal('resolved'),
]);
export type AlertStatus = Static<typeof AlertStatus>;

/** An alert raised by a detection rule (src/server/security/detection); repeats count up while open. */
export const SecurityAlert = Type.Object(
  {
    id: Id,
    ruleId: Type.String(),
    severity: SecuritySeveritySchema,
    status: AlertStatus,
    tenantId: Type.Union([Type.String(), Type.Null()]),
    /** The rule's grouping of its events, e.g. `detail.sourceIp=203.0.113.9`. */
    groupKey: Type.String(),
    summary: Type.String(),
    subjectType: Type.String(),
    subjectId: Type.Union([Type.String(), Type.Null()]),
    /** seq of the security events behind it (the latest, bounded): GET /v1/security/events. */
    eventSeqs: Type.Array(Type.Integer()),
    /** How many times the rule fired for this group while the alert was open. */
    count: Type.Integer(),
    firstAt: Timestamp,
    lastAt: Timestamp,
    /** The automatic response: what the rule asked, on what, and what happened. */
    response: Type.Object({
      action: Type.String(),
      target: Type.Union([Type.String(), Type.Null()]),
      outcome: Type.String(),
    }),
    assignee: Type.Union([Type.String(), Type.Null()]),
    notes: Type.Array(Type.Object({ at: Timestamp, author: Type.String(), text: Type.String() })),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'SecurityAlert' },
);
export type SecurityAlert = Static<typeof SecurityAlert>;

export const SecurityAlertList = Type.Object({ items: Type.Array(SecurityAlert) });

export const SecurityAlertQuery = Type.Object(
  {
    tenant: Type.Optional(Type.String({ maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
    status: Type.Optional(AlertStatus),
    /** 1..1000, default 100; newest first. */
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);
export type SecurityAlertQuery = Static<typeof SecurityAlertQuery>;

/** Acknowledge / resolve / reopen, (un)assign, and add a note, in one request. */
export const SecurityAlertUpdate = Type.Object(
  {
    status: Type.Optional(AlertStatus),
    assignee: Type.Optional(
      Type.Union([
        Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9][a-z0-9._@-]*$' }),
        Type.Null(),
      ]),
    ),
    note: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type SecurityAlertUpdate = Static<typeof SecurityAlertUpdate>;
