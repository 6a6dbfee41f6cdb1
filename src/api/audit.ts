/** The audit log as the API shows it: records, query filters, verification results, the export. */
import { Type, type Static } from 'typebox';
import { Timestamp } from './common.js';

export const AUDIT_OUTCOMES = ['success', 'denied', 'failure'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export const AuditRecord = Type.Object({
  seq: Type.Integer(),
  time: Timestamp,
  actorId: Type.Union([Type.String(), Type.Null()]),
  actor: Type.String(),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  action: Type.String(),
  target: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.Union([Type.Literal('success'), Type.Literal('denied'), Type.Literal('failure')]),
  status: Type.Integer(),
  source: Type.String(),
  requestId: Type.String(),
  detail: Type.Union([Type.String(), Type.Null()]),
  prevHash: Type.String(),
  hash: Type.String(),
});
export type AuditRecordView = Static<typeof AuditRecord>;

export const AuditQuery = Type.Object(
  {
    tenant: Type.Optional(Type.String({ maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' })),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9.:_-]+$' })),
    outcome: Type.Optional(
      Type.Union([Type.Literal('success'), Type.Literal('denied'), Type.Literal('failure')]),
    ),
    since: Type.Optional(Timestamp),
    until: Type.Optional(Timestamp),
    /** Records with seq greater than this (paging forward). */
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuery>;

export const AuditPage = Type.Object({
  items: Type.Array(AuditRecord),
  /** Pass as `after` for the next page; null when this page was the last. */
  next: Type.Union([Type.String(), Type.Null()]),
});

export const AuditVerification = Type.Object({
  ok: Type.Boolean(),
  records: Type.Integer(),
  checkpoints: Type.Integer(),
  /** The head hash of the verified chain. */
  head: Type.String(),
  /** The first bad record or checkpoint; null when everything verified. */
  firstBad: Type.Union([
    Type.Object({
      kind: Type.Union([Type.Literal('record'), Type.Literal('checkpoint')]),
      index: Type.Integer(),
      reason: Type.String(),
    }),
    Type.Null(),
  ]),
});
export type AuditVerification = Static<typeof AuditVerification>;

export const AuditPublicKey = Type.Object({
  algorithm: Type.Literal('ed25519'),
  publicKeyPem: Type.String(),
});
