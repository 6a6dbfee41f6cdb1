/**
 * Loads a detection rule file (format: rule-schema.ts) into compiled rules, or into a list of errors
 * that each name a line and column (and the rule id when known):
 *   1. JSON syntax: JSON.parse, and on failure the scanner in json-positions.ts locates the error;
 *   2. the typebox schema, each error mapped back to the line of the offending value;
 *   3. semantic checks: the rule shape (match / match+threshold / sequence), duplicate ids, duplicate
 *      keys, unknown field roots, bad or catastrophic-looking regexes, response fields.
 * Nothing is compiled unless the whole file is valid, so a caller can keep its old rules on error.
 *
 * Compiling turns every Match into closures (field getters specialized by path depth, one predicate
 * per condition) so the engine's hot path does no lookups by name.
 */
import { Compile } from 'typebox/compile';
import { locate, scanJson, type Position, type ScanResult } from './json-positions.js';
import {
  FIELD_ROOTS,
  RESPONSE_ACTIONS,
  RULE_FILE_VERSION,
  RuleFile,
  SEVERITIES,
  type ConditionOperators,
  type IsolationAllow,
  type Match,
  type ResponseAction,
  type Rule,
} from './rule-schema.js';

export type Severity = (typeof SEVERITIES)[number];

/** The fields of a security event the engine reads (a SecurityEvent has all of them). */
export interface DetectionEvent {
  seq: number;
  occurredAt?: string;
  kind: string;
  severity?: string;
  tenantId?: string | null;
  subjectType?: string;
  subjectId?: string | null;
  summary?: string;
  detail?: Record<string, unknown>;
}

export type Getter = (event: DetectionEvent) => unknown;
export type Predicate = (event: DetectionEvent) => boolean;

export interface KindSelector {
  exact: string[];
  /** `prefix*` patterns without the star ('' for a lone `*`). */
  prefixes: string[];
}

export interface CompiledMatch {
  kinds: KindSelector;
  kindTest: (kind: string) => boolean;
  /** severityAtLeast and where; the kind is not tested (the engine's index does that). */
  test: Predicate;
}

export interface CompiledResponse {
  action: ResponseAction;
  /** The field path of the target id, if any. */
  target: string | null;
  targetOf: Getter | null;
  allow: IsolationAllow[];
  url: string | null;
}

interface CompiledRuleBase {
  id: string;
  description: string;
  severity: Severity;
  enabled: boolean;
  groupBy: string[];
  /** The internal group key of an event (values joined by U+001F). */
  groupKey: (event: DetectionEvent) => string;
  groupGetters: Getter[];
  cooldownMs: number;
  response: CompiledResponse;
  /** The rule as written (canonical JSON): equal fingerprints mean the engine may keep the state. */
  fingerprint: string;
}

export interface CompiledMatchRule extends CompiledRuleBase {
  type: 'match';
  match: CompiledMatch;
}

export interface CompiledThresholdRule extends CompiledRuleBase {
  type: 'threshold';
  match: CompiledMatch;
  count: number;
  windowMs: number;
  distinct: Getter | null;
}

export interface CompiledSequenceRule extends CompiledRuleBase {
  type: 'sequence';
  steps: CompiledMatch[];
  windowMs: number;
}

export type CompiledRule = CompiledMatchRule | CompiledThresholdRule | CompiledSequenceRule;

export interface RuleFileError {
  line: number;
  column: number;
  message: string;
}

export type ParseResult = { ok: true; rules: CompiledRule[] } | { ok: false; errors: RuleFileError[] };

/** At most this many errors are reported per file. */
export const MAX_ERRORS = 50;

const validator = Compile(RuleFile);

const SEVERITY_RANK: Record<string, number> = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };
/** Every action but `alert` and `webhook` acts on something the event names (`target`). */
const TARGETED_ACTIONS = new Set<ResponseAction>(
  RESPONSE_ACTIONS.filter((a) => a !== 'alert' && a !== 'webhook'),
);
const OPERATOR_KEYS = new Set(['in', 'ne', 'gt', 'gte', 'lt', 'lte', 'regex', 'flags', 'exists']);

interface PointedError {
  pointer: string;
  message: string;
  /** Use this position instead of the pointer's. */
  position?: Position;
}

// ------------------------------------------------------------------------------------------ parsing

export function parseRuleFile(text: string): ParseResult {
  let value: unknown;
  let scan: ScanResult | undefined;
  try {
    value = JSON.parse(text);
  } catch (error) {
    scan = scanJson(text);
    const at = scan.error ?? { line: 1, column: 1, message: '' };
    const message = scan.error?.message ?? (error instanceof Error ? error.message : String(error));
    return {
      ok: false,
      errors: [{ line: at.line, column: at.column, message: `JSON syntax error: ${message}` }],
    };
  }
  scan = scanJson(text);
  const ruleIdAt = (pointer: string): string | undefined => {
    const m = /^\/rules\/(\d+)(?:\/|$)/.exec(pointer);
    if (m === null || value === null || typeof value !== 'object') return undefined;
    const rules = (value as { rules?: unknown }).rules;
    if (!Array.isArray(rules)) return undefined;
    const rule: unknown = rules[Number(m[1])];
    if (rule === null || typeof rule !== 'object') return undefined;
    const id = (rule as { id?: unknown }).id;
    return typeof id === 'string' && id.length > 0 && id.length <= 63 ? id : undefined;
  };
  const finish = (pointed: PointedError[]): ParseResult => {
    const errors = pointed.map((e): RuleFileError => {
      const at = e.position ?? locate(scan.positions, e.pointer);
      const id = ruleIdAt(e.pointer);
      const where = e.pointer === '' ? '' : ` (at ${e.pointer})`;
      return { line: at.line, column: at.column, message: `${id ? `rule ${id}: ` : ''}${e.message}${where}` };
    });
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    return { ok: false, errors: errors.slice(0, MAX_ERRORS) };
  };

  const duplicateKeys: PointedError[] = scan.duplicates.map((d) => ({
    pointer: d.pointer,
    message: `duplicate key ${JSON.stringify(d.key)}`,
    position: d.position,
  }));
  if (!validator.Check(value)) return finish([...schemaErrors(value), ...duplicateKeys]);
  const file = value;
  const semantic = [...duplicateKeys, ...semanticErrors(file)];
  if (semantic.length > 0) return finish(semantic);
  return { ok: true, rules: file.rules.map((rule) => compileRule(rule)) };
}

const WRONG_SHAPE = 'has the wrong type or shape';

function unknownProperty(objectPointer: string, name: string): PointedError {
  const hint =
    name === 'distinct'
      ? ' (`distinct` belongs inside `threshold`)'
      : name === 'windowSeconds' || name === 'count'
        ? ' (it belongs inside `threshold` or `sequence`)'
        : '';
  return {
    pointer: `${objectPointer}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`,
    message: `unknown property ${JSON.stringify(name)}${hint}`,
  };
}

/** Typebox's errors, reduced to the most specific ones, one message per location. */
function schemaErrors(value: unknown): PointedError[] {
  const raw = validator.Errors(value);
  const found: PointedError[] = [];
  const types = new Map<string, string[]>();
  const constants = new Map<string, string[]>();
  for (const e of raw) {
    if (e.keyword === 'boolean') {
      // additionalProperties: false, reported at the property itself.
      const cut = e.instancePath.lastIndexOf('/');
      const name = e.instancePath
        .slice(cut + 1)
        .replace(/~1/g, '/')
        .replace(/~0/g, '~');
      found.push(unknownProperty(e.instancePath.slice(0, cut), name));
      continue;
    }
    if (e.keyword === 'additionalProperties') {
      const names = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      for (const name of names) found.push(unknownProperty(e.instancePath, name));
      continue;
    }
    if (e.keyword === 'const') {
      const list = constants.get(e.instancePath) ?? [];
      list.push(JSON.stringify((e.params as { allowedValue?: unknown }).allowedValue));
      constants.set(e.instancePath, list);
      continue;
    }
    if (e.keyword === 'type') {
      const list = types.get(e.instancePath) ?? [];
      list.push((e.params as { type?: string }).type ?? '?');
      types.set(e.instancePath, list);
      continue;
    }
    if (e.keyword === 'anyOf' && e.message === 'must match a schema in anyOf') {
      found.push({ pointer: e.instancePath, message: WRONG_SHAPE });
      continue;
    }
    found.push({ pointer: e.instancePath, message: e.message });
  }
  for (const [pointer, list] of constants) {
    found.push({
      pointer,
      message: list.length === 1 ? `must be ${list[0]}` : `must be one of ${list.join(', ')}`,
    });
  }
  for (const [pointer, list] of types) {
    const unique = [...new Set(list)];
    const last = unique.pop()!;
    found.push({
      pointer,
      message: `must be ${unique.length > 0 ? `${unique.join(', ')} or ${last}` : last}`,
    });
  }
  // Keep only the deepest errors: an error at /a is noise when /a/b explains it.
  const specific = found.filter(
    (e) =>
      !found.some(
        (other) => other.pointer.length > e.pointer.length && other.pointer.startsWith(`${e.pointer}/`),
      ),
  );
  // "wrong type or shape" is noise next to a specific message at the same place.
  const shaped = specific.filter(
    (e) =>
      e.message !== WRONG_SHAPE ||
      !specific.some((other) => other.pointer === e.pointer && other.message !== WRONG_SHAPE),
  );
  const seen = new Set<string>();
  return shaped.filter((e) => {
    const key = `${e.pointer}\u0000${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ----------------------------------------------------------------------------------- semantic checks

function fieldPathError(path: string): string | null {
  const segments = path.split('.');
  const root = segments[0]!;
  if (!FIELD_ROOTS.includes(root))
    return `unknown field ${JSON.stringify(path)}: a field path starts with one of ${FIELD_ROOTS.join(', ')}`;
  if (root === 'detail' && segments.length < 2)
    return `field ${JSON.stringify(path)}: name a field inside detail, e.g. detail.vmId`;
  if (root !== 'detail' && segments.length > 1)
    return `field ${JSON.stringify(path)}: ${root} has no sub-fields`;
  for (const segment of segments.slice(1)) {
    if (segment in Object.prototype || segment === '__proto__' || segment === 'prototype')
      return `field ${JSON.stringify(path)}: ${JSON.stringify(segment)} is a reserved name`;
  }
  return null;
}

/**
 * A cheap guard against catastrophic backtracking: rejects backreferences, lookbehind with
 * quantifiers inside, and a quantified group that itself contains an unbounded quantifier, e.g.
 * `(a+)+`, `(.*)*`, `(\w+\s?)+`. It does not prove a pattern safe; the length cap bounds the rest.
 */
export function regexRisk(source: string): string | null {
  if (/\\[1-9]|\\k</.test(source)) return 'backreferences are not allowed';
  const stack: boolean[] = []; // per open group: contains an unbounded quantifier
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      continue;
    }
    if (c === '(') {
      stack.push(false);
      continue;
    }
    const unbounded = c === '+' || c === '*' || (c === '{' && /^\{\d+,\}/.test(source.slice(i)));
    if (c === ')') {
      const inner = stack.pop() ?? false;
      const next = source[i + 1];
      const quantified =
        next === '+' || next === '*' || (next === '{' && /^\{\d+(,\d*)?\}/.test(source.slice(i + 1)));
      if (inner && quantified) return 'nested quantifiers (catastrophic backtracking)';
      if (stack.length > 0 && (inner || quantified)) stack[stack.length - 1] = true;
      continue;
    }
    if (unbounded && stack.length > 0) stack[stack.length - 1] = true;
  }
  return null;
}

function matchErrors(match: Match, pointer: string): PointedError[] {
  const errors: PointedError[] = [];
  for (const [path, condition] of Object.entries(match.where ?? {})) {
    const at = `${pointer}/where/${path.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    const fieldError = fieldPathError(path);
    if (fieldError !== null) errors.push({ pointer: at, message: fieldError });
    if (condition === null || typeof condition !== 'object' || Array.isArray(condition)) continue;
    const ops = condition;
    if (ops.flags !== undefined && ops.regex === undefined)
      errors.push({ pointer: `${at}/flags`, message: '`flags` needs `regex`' });
    if (ops.regex !== undefined) {
      const risk = regexRisk(ops.regex);
      if (risk !== null) errors.push({ pointer: `${at}/regex`, message: `regex rejected: ${risk}` });
      else {
        try {
          new RegExp(ops.regex, ops.flags ?? '');
        } catch (error) {
          errors.push({
            pointer: `${at}/regex`,
            message: `invalid regex: ${error instanceof Error ? error.message : String(error)}`,
          });
        }
      }
    }
    for (const key of Object.keys(ops)) {
      if (!OPERATOR_KEYS.has(key))
        errors.push({ pointer: `${at}/${key}`, message: `unknown operator ${key}` });
    }
  }
  return errors;
}

function semanticErrors(file: RuleFile): PointedError[] {
  const errors: PointedError[] = [];
  if (file.version !== RULE_FILE_VERSION)
    errors.push({ pointer: '/version', message: 'unsupported version' });
  const ids = new Map<string, number>();
  file.rules.forEach((rule, index) => {
    const at = `/rules/${index}`;
    const first = ids.get(rule.id);
    if (first !== undefined)
      errors.push({
        pointer: `${at}/id`,
        message: `duplicate rule id ${JSON.stringify(rule.id)} (first at /rules/${first})`,
      });
    else ids.set(rule.id, index);

    const shape = [rule.match && 'match', rule.threshold && 'threshold', rule.sequence && 'sequence'].filter(
      Boolean,
    );
    if (rule.sequence !== undefined && (rule.match !== undefined || rule.threshold !== undefined))
      errors.push({
        pointer: `${at}/sequence`,
        message: '`sequence` cannot be combined with `match` or `threshold`',
      });
    else if (rule.threshold !== undefined && rule.match === undefined)
      errors.push({ pointer: `${at}/threshold`, message: '`threshold` needs a `match`' });
    else if (shape.length === 0)
      errors.push({
        pointer: `${at}/id`,
        message: 'a rule needs `match` (optionally with `threshold`) or `sequence`',
      });
    if (rule.groupBy !== undefined && (rule.threshold !== undefined || rule.sequence !== undefined))
      errors.push({
        pointer: `${at}/groupBy`,
        message: 'a rule-level `groupBy` is for match-only rules; put it inside `threshold` or `sequence`',
      });

    if (rule.match) errors.push(...matchErrors(rule.match, `${at}/match`));
    rule.sequence?.steps.forEach((step, i) => errors.push(...matchErrors(step, `${at}/sequence/steps/${i}`)));
    const groupBy = rule.groupBy ?? rule.threshold?.groupBy ?? rule.sequence?.groupBy ?? [];
    const groupAt = rule.groupBy
      ? `${at}/groupBy`
      : rule.threshold
        ? `${at}/threshold/groupBy`
        : `${at}/sequence/groupBy`;
    groupBy.forEach((path, i) => {
      const e = fieldPathError(path);
      if (e !== null) errors.push({ pointer: `${groupAt}/${i}`, message: e });
    });
    if (rule.threshold?.distinct !== undefined) {
      const e = fieldPathError(rule.threshold.distinct);
      if (e !== null) errors.push({ pointer: `${at}/threshold/distinct`, message: e });
    }

    const response = rule.response;
    const rat = `${at}/response`;
    if (response.target !== undefined) {
      const e = fieldPathError(response.target);
      if (e !== null) errors.push({ pointer: `${rat}/target`, message: e });
    }
    if (TARGETED_ACTIONS.has(response.action) && response.target === undefined)
      errors.push({
        pointer: `${rat}/action`,
        message: `${String(response.action)} needs a \`target\` (the field holding the id)`,
      });
    if (response.allow !== undefined && response.action !== 'isolate-vm')
      errors.push({ pointer: `${rat}/allow`, message: '`allow` only applies to isolate-vm' });
    if (response.action === 'webhook') {
      if (response.url === undefined)
        errors.push({ pointer: `${rat}/action`, message: 'webhook needs a `url`' });
      else if (!webhookUrlAllowed(response.url))
        errors.push({
          pointer: `${rat}/url`,
          message: 'the webhook url must be https:// (http:// only to a loopback address)',
        });
    } else if (response.url !== undefined)
      errors.push({ pointer: `${rat}/url`, message: '`url` only applies to webhook' });
    response.allow?.forEach((allow, i) => {
      const ports = allow.ports?.split('-').map(Number) ?? [];
      if (ports.some((p) => p < 1 || p > 65535) || (ports.length === 2 && ports[0]! > ports[1]!))
        errors.push({ pointer: `${rat}/allow/${i}/ports`, message: 'ports must be 1..65535, low-high' });
      if (allow.protocol === 'icmp' && allow.ports !== undefined)
        errors.push({ pointer: `${rat}/allow/${i}/ports`, message: 'icmp has no ports' });
    });
  });
  return errors;
}

// ----------------------------------------------------------------------------------------- compiling

/** A getter for a validated field path, specialized so the hot path does no string work. */
export function compileGetter(path: string): Getter {
  switch (path) {
    case 'kind':
      return (e) => e.kind;
    case 'severity':
      return (e) => e.severity;
    case 'tenantId':
      return (e) => e.tenantId;
    case 'subjectType':
      return (e) => e.subjectType;
    case 'subjectId':
      return (e) => e.subjectId;
    case 'summary':
      return (e) => e.summary;
  }
  const segments = path.split('.').slice(1);
  if (segments.length === 1) {
    const a = segments[0]!;
    return (e) => {
      const d = e.detail;
      return d === undefined || d === null ? undefined : d[a];
    };
  }
  if (segments.length === 2) {
    const a = segments[0]!;
    const b = segments[1]!;
    return (e) => {
      const d = e.detail;
      if (d === undefined || d === null) return undefined;
      const x = d[a];
      return x !== null && typeof x === 'object' ? (x as Record<string, unknown>)[b] : undefined;
    };
  }
  return (e) => {
    let x: unknown = e.detail;
    for (const s of segments) {
      if (x === null || typeof x !== 'object') return undefined;
      x = (x as Record<string, unknown>)[s];
    }
    return x;
  };
}

type ValueTest = (v: unknown) => boolean;

function operatorTests(ops: ConditionOperators): ValueTest[] {
  const tests: ValueTest[] = [];
  if (ops.in !== undefined) {
    const set = new Set<unknown>(ops.in);
    tests.push((v) => set.has(v));
  }
  if (ops.ne !== undefined) {
    const x = ops.ne;
    tests.push((v) => v !== x);
  }
  if (ops.gt !== undefined) {
    const n = ops.gt;
    tests.push((v) => typeof v === 'number' && v > n);
  }
  if (ops.gte !== undefined) {
    const n = ops.gte;
    tests.push((v) => typeof v === 'number' && v >= n);
  }
  if (ops.lt !== undefined) {
    const n = ops.lt;
    tests.push((v) => typeof v === 'number' && v < n);
  }
  if (ops.lte !== undefined) {
    const n = ops.lte;
    tests.push((v) => typeof v === 'number' && v <= n);
  }
  if (ops.regex !== undefined) {
    const re = new RegExp(ops.regex, ops.flags ?? '');
    tests.push((v) => typeof v === 'string' && re.test(v));
  }
  if (ops.exists !== undefined) {
    const want = ops.exists;
    tests.push((v) => (v !== undefined && v !== null) === want);
  }
  return tests;
}

function compileCondition(path: string, condition: unknown): Predicate {
  const get = compileGetter(path);
  if (condition === null || typeof condition !== 'object') {
    const x = condition;
    return (e) => get(e) === x;
  }
  const tests = operatorTests(condition);
  if (tests.length === 1) {
    const t = tests[0]!;
    return (e) => t(get(e));
  }
  if (tests.length === 2) {
    const t0 = tests[0]!;
    const t1 = tests[1]!;
    return (e) => {
      const v = get(e);
      return t0(v) && t1(v);
    };
  }
  return (e) => {
    const v = get(e);
    for (const t of tests) if (!t(v)) return false;
    return true;
  };
}

function allOf(predicates: Predicate[]): Predicate {
  if (predicates.length === 0) return () => true;
  if (predicates.length === 1) return predicates[0]!;
  if (predicates.length === 2) {
    const p0 = predicates[0]!;
    const p1 = predicates[1]!;
    return (e) => p0(e) && p1(e);
  }
  if (predicates.length === 3) {
    const p0 = predicates[0]!;
    const p1 = predicates[1]!;
    const p2 = predicates[2]!;
    return (e) => p0(e) && p1(e) && p2(e);
  }
  return (e) => {
    for (const p of predicates) if (!p(e)) return false;
    return true;
  };
}

export function compileMatch(match: Match): CompiledMatch {
  const patterns = Array.isArray(match.kind) ? match.kind : [match.kind];
  const kinds: KindSelector = { exact: [], prefixes: [] };
  for (const p of patterns) {
    if (p.endsWith('*')) kinds.prefixes.push(p.slice(0, -1));
    else kinds.exact.push(p);
  }
  const exact = new Set(kinds.exact);
  const prefixes = kinds.prefixes;
  const kindTest = (kind: string): boolean => exact.has(kind) || prefixes.some((p) => kind.startsWith(p));
  const predicates: Predicate[] = [];
  if (match.severityAtLeast !== undefined) {
    const min = SEVERITY_RANK[match.severityAtLeast]!;
    predicates.push((e) => (SEVERITY_RANK[e.severity ?? ''] ?? -1) >= min);
  }
  for (const [path, condition] of Object.entries(match.where ?? {}))
    predicates.push(compileCondition(path, condition));
  return { kinds, kindTest, test: allOf(predicates) };
}

function keyPart(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === undefined || v === null || typeof v === 'function' || typeof v === 'symbol') return '';
  return JSON.stringify(v);
}

function compileGroupKey(getters: Getter[]): (event: DetectionEvent) => string {
  if (getters.length === 0) return () => '';
  if (getters.length === 1) {
    const g = getters[0]!;
    return (e) => {
      const v = g(e);
      return typeof v === 'string' ? v : keyPart(v);
    };
  }
  return (e) => {
    let key = keyPart(getters[0]!(e));
    for (let i = 1; i < getters.length; i++) key += `\u001f${keyPart(getters[i]!(e))}`;
    return key;
  };
}

function compileRule(rule: Rule): CompiledRule {
  const groupBy = rule.threshold?.groupBy ??
    rule.sequence?.groupBy ??
    rule.groupBy ?? ['subjectType', 'subjectId'];
  const groupGetters = groupBy.map(compileGetter);
  const response: CompiledResponse = {
    action: rule.response.action,
    target: rule.response.target ?? null,
    targetOf: rule.response.target === undefined ? null : compileGetter(rule.response.target),
    allow: rule.response.action === 'isolate-vm' ? (rule.response.allow ?? []) : [],
    url: rule.response.url ?? null,
  };
  const base = {
    id: rule.id,
    description: rule.description,
    severity: rule.severity,
    enabled: rule.enabled ?? true,
    groupBy,
    groupGetters,
    groupKey: compileGroupKey(groupGetters),
    cooldownMs: Math.round((rule.cooldownSeconds ?? 0) * 1000),
    response,
    fingerprint: JSON.stringify(rule),
  };
  if (rule.sequence !== undefined)
    return {
      ...base,
      type: 'sequence',
      steps: rule.sequence.steps.map(compileMatch),
      windowMs: Math.round(rule.sequence.windowSeconds * 1000),
    };
  const match = compileMatch(rule.match!);
  if (rule.threshold !== undefined)
    return {
      ...base,
      type: 'threshold',
      match,
      count: rule.threshold.count,
      windowMs: Math.round(rule.threshold.windowSeconds * 1000),
      distinct: rule.threshold.distinct === undefined ? null : compileGetter(rule.threshold.distinct),
    };
  return { ...base, type: 'match', match };
}

/** A rule's webhook: https, or http to this machine only (a local relay); never credentials in it. */
export function webhookUrlAllowed(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  if (url.username !== '' || url.password !== '') return false;
  if (url.protocol === 'https:') return url.hostname !== '';
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
