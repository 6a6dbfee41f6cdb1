/**
 * The compliance benchmark as the API shows it: named checks over the platform and every VM, each
 * passed or failed with evidence (GET /v1/platform/compliance/report, .../history, POST .../runs).
 */
import { Type, type Static } from 'typebox';
import { Id, Timestamp } from './common.js';

export const ComplianceTrigger = Type.Union([Type.Literal('schedule'), Type.Literal('manual')]);
export type ComplianceTrigger = Static<typeof ComplianceTrigger>;

export const ComplianceCheckResult = Type.Object({
  /** kebab-case, e.g. `no-admin-ports-open-to-world`. */
  id: Type.String(),
  title: Type.String(),
  severity: Type.Union([Type.Literal('high'), Type.Literal('medium')]),
  passed: Type.Boolean(),
  /** A short sentence saying why it passed or failed. */
  evidence: Type.String(),
  /** The offending objects (bounded), empty when it passed. */
  offending: Type.Array(Type.Unknown()),
});
export type ComplianceCheckResult = Static<typeof ComplianceCheckResult>;

export const ComplianceRunSummary = Type.Object({
  id: Id,
  startedAt: Timestamp,
  finishedAt: Timestamp,
  trigger: ComplianceTrigger,
  /** Percentage of passing checks, 0-100 (one decimal). */
  score: Type.Number(),
  passed: Type.Integer(),
  failed: Type.Integer(),
});
export type ComplianceRunSummary = Static<typeof ComplianceRunSummary>;

export const ComplianceReport = Type.Object(
  { ...ComplianceRunSummary.properties, results: Type.Array(ComplianceCheckResult) },
  { $id: 'ComplianceReport' },
);
export type ComplianceReport = Static<typeof ComplianceReport>;

export const ComplianceHistory = Type.Object({ items: Type.Array(ComplianceRunSummary) });
export type ComplianceHistory = Static<typeof ComplianceHistory>;

export const ComplianceHistoryQuery = Type.Object(
  {
    /** 1..1000, default 100; newest first. */
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
  },
  { additionalProperties: false },
);
export type ComplianceHistoryQuery = Static<typeof ComplianceHistoryQuery>;
