/**
 * The detection rule file format: JSON, `{ "version": 1, "rules": [Rule, ...] }`, validated by the
 * typebox schema below and then by the semantic checks in rule-loader.ts (which give every error a
 * line number).
 *
 * A Rule is one of three shapes (the loader enforces "exactly one"):
 *   - `match` only: every event that matches fires (subject to `cooldownSeconds`, grouped by the
 *     rule-level `groupBy`, default `["subjectType", "subjectId"]`);
 *   - `match` + `threshold`: at least `count` matching events (or, with `distinct`, `count` distinct
 *     values of that field) per group within a sliding window of `windowSeconds`;
 *   - `sequence`: the `steps` (2..5 Matches) in that order, per group, all within `windowSeconds` of
 *     the first step.
 * When a threshold or sequence fires, its group's window starts over (every detection stands for a
 * fresh set of events); `cooldownSeconds` additionally suppresses further detections of that group
 * for that long.
 *
 * A Match: `kind` (an exact kind, `prefix*`, or a list of those), optional `severityAtLeast`, and
 * `where`: field path -> condition, all of which must hold. A field path is `kind`, `severity`,
 * `tenantId`, `subjectType`, `subjectId`, `summary` or `detail.a.b...`. A condition is a literal
 * (string, number, boolean or null: equals) or an object of operators, all of which must hold:
 * `in` [literals], `ne` literal (true when the field is absent), `gt`/`gte`/`lt`/`lte` number (false
 * when the field is not a number), `regex` (+ optional `flags` from "imsu"; false when the field is
 * not a string), `exists` boolean (present and not null).
 *
 * The response: `action`, `target` (the field path holding the VM / user / token id the action applies
 * to; required for every action but alert and webhook), `allow` (isolate-vm only: what the quarantine
 * security group still allows; default nothing), `url` (webhook only, https).
 */
import { Type, type Static } from 'typebox';

export const RULE_FILE_VERSION = 1;
export const RULE_ID_PATTERN = '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$';
/** Shape only; the loader checks the root against FIELD_ROOTS. */
export const FIELD_PATH_PATTERN = '^[A-Za-z][A-Za-z0-9_]*(?:\\.[A-Za-z0-9_:-]+){0,7}$';
/** Top-level event fields a path may start with; `detail` needs at least one more segment. */
export const FIELD_ROOTS = ['kind', 'severity', 'tenantId', 'subjectType', 'subjectId', 'summary', 'detail'];
/** An exact kind or a `prefix*` (a lone `*` matches every kind). */
export const KIND_PATTERN_PATTERN = '^(?:[a-z0-9][a-z0-9._:-]{0,63}\\*?|\\*)$';
export const MAX_REGEX_LENGTH = 256;
export const MAX_RULES = 500;
export const MAX_THRESHOLD_COUNT = 10_000;
export const MAX_WINDOW_SECONDS = 7 * 24 * 3600;

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export const RESPONSE_ACTIONS = [
  'alert',
  'pause-vm',
  'isolate-vm',
  'snapshot-vm',
  'stop-vm',
  'disable-user',
  'revoke-token',
  'webhook',
] as const;
export type ResponseAction = (typeof RESPONSE_ACTIONS)[number];

const Severity = Type.Union(SEVERITIES.map((s) => Type.Literal(s)));
const FieldPath = Type.String({ minLength: 1, maxLength: 128, pattern: FIELD_PATH_PATTERN });
const KindPattern = Type.String({ minLength: 1, maxLength: 65, pattern: KIND_PATTERN_PATTERN });
const Literal = Type.Union([Type.String({ maxLength: 1024 }), Type.Number(), Type.Boolean(), Type.Null()]);

export const ConditionOperators = Type.Object(
  {
    in: Type.Optional(Type.Array(Literal, { minItems: 1, maxItems: 1000 })),
    ne: Type.Optional(Literal),
    gt: Type.Optional(Type.Number()),
    gte: Type.Optional(Type.Number()),
    lt: Type.Optional(Type.Number()),
    lte: Type.Optional(Type.Number()),
    regex: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_REGEX_LENGTH })),
    flags: Type.Optional(Type.String({ pattern: '^[imsu]{0,4}$' })),
    exists: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type ConditionOperators = Static<typeof ConditionOperators>;

export const Condition = Type.Union([Literal, ConditionOperators]);
export type Condition = Static<typeof Condition>;

export const Match = Type.Object(
  {
    kind: Type.Union([KindPattern, Type.Array(KindPattern, { minItems: 1, maxItems: 16 })]),
    severityAtLeast: Type.Optional(Severity),
    where: Type.Optional(
      Type.Record(Type.String({ pattern: FIELD_PATH_PATTERN }), Condition, { maxProperties: 32 }),
    ),
  },
  { additionalProperties: false },
);
export type Match = Static<typeof Match>;

const GroupBy = Type.Array(FieldPath, { maxItems: 4 });
const WindowSeconds = Type.Number({ exclusiveMinimum: 0, maximum: MAX_WINDOW_SECONDS });

export const Threshold = Type.Object(
  {
    count: Type.Integer({ minimum: 1, maximum: MAX_THRESHOLD_COUNT }),
    windowSeconds: WindowSeconds,
    groupBy: GroupBy,
    distinct: Type.Optional(FieldPath),
  },
  { additionalProperties: false },
);
export type Threshold = Static<typeof Threshold>;

export const Sequence = Type.Object(
  {
    steps: Type.Array(Match, { minItems: 2, maxItems: 5 }),
    windowSeconds: WindowSeconds,
    groupBy: GroupBy,
  },
  { additionalProperties: false },
);
export type Sequence = Static<typeof Sequence>;

export const IsolationAllow = Type.Object(
  {
    direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
    protocol: Type.Union([
      Type.Literal('tcp'),
      Type.Literal('udp'),
      Type.Literal('icmp'),
      Type.Literal('any'),
    ]),
    /** One port or a range `lo-hi`; absent: every port. */
    ports: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}(?:-[0-9]{1,5})?$' })),
    /** An IPv4 or IPv6 CIDR, e.g. the forensics host. */
    cidr: Type.String({ minLength: 1, maxLength: 64, pattern: '^[0-9a-fA-F:.]+/[0-9]{1,3}$' }),
  },
  { additionalProperties: false },
);
export type IsolationAllow = Static<typeof IsolationAllow>;

export const Response = Type.Object(
  {
    action: Type.Union(RESPONSE_ACTIONS.map((a) => Type.Literal(a))),
    target: Type.Optional(FieldPath),
    allow: Type.Optional(Type.Array(IsolationAllow, { maxItems: 16 })),
    url: Type.Optional(Type.String({ minLength: 9, maxLength: 2048 })),
  },
  { additionalProperties: false },
);
export type Response = Static<typeof Response>;

export const Rule = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 63, pattern: RULE_ID_PATTERN }),
    description: Type.String({ minLength: 1, maxLength: 500 }),
    severity: Severity,
    enabled: Type.Optional(Type.Boolean()),
    match: Type.Optional(Match),
    threshold: Type.Optional(Threshold),
    sequence: Type.Optional(Sequence),
    /** Match-only rules: the group a cooldown applies to (default subjectType + subjectId). */
    groupBy: Type.Optional(GroupBy),
    response: Response,
    cooldownSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: MAX_WINDOW_SECONDS })),
  },
  { additionalProperties: false },
);
export type Rule = Static<typeof Rule>;

export const RuleFile = Type.Object(
  {
    version: Type.Literal(RULE_FILE_VERSION),
    rules: Type.Array(Rule, { maxItems: MAX_RULES }),
  },
  { additionalProperties: false, $id: 'DetectionRuleFile' },
);
export type RuleFile = Static<typeof RuleFile>;
