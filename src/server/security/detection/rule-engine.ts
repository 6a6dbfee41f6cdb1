/**
 * The detection engine: security events in, detections out. Pure and synchronous; the caller feeds it
 * the event stream (SecurityEventLog's 'event'), persists the detections and runs the responses.
 *
 * - Rules are indexed by exact kind, plus a list of `prefix*` rules; the rules an event kind meets are
 *   resolved once per kind and cached, so an event only meets rules that can match it.
 * - Event time is `timeMs` when given (no Date parsing in the hot path), else occurredAt parsed
 *   (cached for runs of equal timestamps), else the injected clock.
 * - match: fires on every matching event (per-group cooldown).
 * - threshold: per group, a ring buffer of the last `count` matching events' times; it fires when the
 *   oldest of them is within the window (O(1) per event). With `distinct`: per group a Map of value ->
 *   last seen, in last-seen order, pruned from the front as the window slides; fires when it holds
 *   `count` values.
 * - sequence: per group, for each k the latest-starting chain that completed steps 0..k-1 (the latest
 *   start dominates: it is the last to expire); an event is tried against the steps from the last to
 *   the first, so one event never completes two steps.
 * When a threshold or sequence fires, its group starts over; `cooldownMs` then suppresses detections of
 * the group (the window still restarts, so memory stays bounded by `count`).
 * - Memory: at most `maxGroupsPerRule` groups per rule, least recently used evicted (an evicted group
 *   loses its partial window and its cooldown).
 * - replace(text): on a valid file swaps the rules, keeping the state of rules whose definition is
 *   unchanged; on errors keeps the old rules and returns the errors.
 */
import {
  parseRuleFile,
  type CompiledMatchRule,
  type CompiledResponse,
  type CompiledRule,
  type CompiledSequenceRule,
  type CompiledThresholdRule,
  type DetectionEvent,
  type ParseResult,
  type Severity,
} from './rule-loader.js';
import type { IsolationAllow, ResponseAction } from './rule-schema.js';

export type { DetectionEvent, CompiledRule, ParseResult };

export interface DetectionResponse {
  action: ResponseAction;
  /** The field path the target id was read from, if the rule names one. */
  target: string | null;
  /** The VM / user / token id from the last event, or null (a responder then only alerts). */
  targetId: string | null;
  allow: IsolationAllow[];
  url: string | null;
}

export interface Detection {
  ruleId: string;
  severity: Severity;
  description: string;
  response: DetectionResponse;
  /** Readable group, e.g. `detail.sourceIp=203.0.113.9` ('' for a rule without grouping). */
  groupKey: string;
  /** The tenant of the event that completed the detection. */
  tenantId: string | null;
  /** seq of the events that made the detection, oldest first (at most maxEvidence, the latest). */
  events: number[];
  firstAt: string;
  lastAt: string;
  /** Events (or distinct values, or steps) that made it. */
  count: number;
}

export interface DetectionEngineOptions {
  /** Groups kept per rule (least recently used evicted). Default 10,000. */
  maxGroupsPerRule?: number;
  /** seqs kept per detection. Default 20. */
  maxEvidence?: number;
  /** The clock for events without a usable occurredAt. Default Date.now. */
  now?: () => number;
}

export const DEFAULT_MAX_GROUPS_PER_RULE = 10_000;
export const DEFAULT_MAX_EVIDENCE = 20;

const NO_DETECTIONS: readonly Detection[] = Object.freeze([]);

/** A Map used as an LRU: get() moves the entry to the most recent end. */
class GroupTable<S> {
  readonly map = new Map<string, S>();
  constructor(private readonly max: number) {}

  get(key: string): S | undefined {
    const map = this.map;
    const s = map.get(key);
    if (s !== undefined) {
      map.delete(key);
      map.set(key, s);
    }
    return s;
  }

  set(key: string, state: S): void {
    const map = this.map;
    map.set(key, state);
    if (map.size > this.max) {
      const oldest = map.keys().next();
      if (oldest.done !== true) map.delete(oldest.value);
    }
  }

  get size(): number {
    return this.map.size;
  }
}

abstract class Runtime {
  constructor(
    readonly rule: CompiledRule,
    protected readonly maxGroups: number,
    protected readonly maxEvidence: number,
  ) {}
  abstract process(event: DetectionEvent, t: number): Detection | undefined;
  abstract get groupCount(): number;

  protected detection(
    event: DetectionEvent,
    events: number[],
    firstMs: number,
    lastMs: number,
    count: number,
  ): Detection {
    const rule = this.rule;
    const r: CompiledResponse = rule.response;
    const targetValue = r.targetOf === null ? undefined : r.targetOf(event);
    return {
      ruleId: rule.id,
      severity: rule.severity,
      description: rule.description,
      response: {
        action: r.action,
        target: r.target,
        targetId:
          typeof targetValue === 'string'
            ? targetValue
            : typeof targetValue === 'number'
              ? String(targetValue)
              : null,
        allow: r.allow,
        url: r.url,
      },
      groupKey: rule.groupBy
        .map((path, i) => {
          const v = rule.groupGetters[i]!(event);
          return `${path}=${v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v)}`;
        })
        .join(','),
      tenantId: event.tenantId ?? null,
      events,
      firstAt: new Date(firstMs).toISOString(),
      lastAt: new Date(lastMs).toISOString(),
      count,
    };
  }
}

class MatchRuntime extends Runtime {
  private readonly cooldowns: GroupTable<number>;
  constructor(
    override readonly rule: CompiledMatchRule,
    maxGroups: number,
    maxEvidence: number,
  ) {
    super(rule, maxGroups, maxEvidence);
    this.cooldowns = new GroupTable<number>(maxGroups);
  }

  process(event: DetectionEvent, t: number): Detection | undefined {
    const rule = this.rule;
    if (!rule.match.test(event)) return undefined;
    if (rule.cooldownMs > 0) {
      const key = rule.groupKey(event);
      const until = this.cooldowns.get(key);
      if (until !== undefined && t < until) return undefined;
      this.cooldowns.set(key, t + rule.cooldownMs);
    }
    return this.detection(event, [event.seq], t, t, 1);
  }

  get groupCount(): number {
    return this.cooldowns.size;
  }
}

interface CountState {
  times: Float64Array;
  seqs: Float64Array;
  /** Index of the next write. */
  head: number;
  size: number;
  cooldownUntil: number;
}

class CountRuntime extends Runtime {
  private readonly groups: GroupTable<CountState>;
  constructor(
    override readonly rule: CompiledThresholdRule,
    maxGroups: number,
    maxEvidence: number,
  ) {
    super(rule, maxGroups, maxEvidence);
    this.groups = new GroupTable<CountState>(maxGroups);
  }

  process(event: DetectionEvent, t: number): Detection | undefined {
    const rule = this.rule;
    if (!rule.match.test(event)) return undefined;
    const key = rule.groupKey(event);
    const n = rule.count;
    let s = this.groups.get(key);
    if (s === undefined) {
      s = {
        times: new Float64Array(n),
        seqs: new Float64Array(n),
        head: 0,
        size: 0,
        cooldownUntil: -Infinity,
      };
      this.groups.set(key, s);
    }
    s.times[s.head] = t;
    s.seqs[s.head] = event.seq;
    s.head = s.head + 1 === n ? 0 : s.head + 1;
    if (s.size < n) s.size++;
    if (s.size < n) return undefined;
    // Full: the oldest entry is at head.
    const oldest = s.times[s.head]!;
    if (t - oldest > rule.windowMs) return undefined;
    s.size = 0;
    if (t < s.cooldownUntil) return undefined;
    s.cooldownUntil = t + rule.cooldownMs;
    const keep = Math.min(n, this.maxEvidence);
    const events: number[] = new Array<number>(keep);
    for (let i = 0; i < keep; i++) {
      let at = s.head - keep + i;
      if (at < 0) at += n;
      events[i] = s.seqs[at]!;
    }
    return this.detection(event, events, oldest, t, n);
  }

  get groupCount(): number {
    return this.groups.size;
  }
}

interface DistinctState {
  /** value -> last seen (ms), least recently seen first. */
  values: Map<unknown, number>;
  /** The latest contributing events (seq, time), bounded by maxEvidence. */
  evidence: { seq: number; t: number }[];
  cooldownUntil: number;
}

class DistinctRuntime extends Runtime {
  private readonly groups: GroupTable<DistinctState>;
  private readonly distinct: (event: DetectionEvent) => unknown;
  constructor(
    override readonly rule: CompiledThresholdRule,
    maxGroups: number,
    maxEvidence: number,
  ) {
    super(rule, maxGroups, maxEvidence);
    this.groups = new GroupTable<DistinctState>(maxGroups);
    this.distinct = rule.distinct!;
  }

  process(event: DetectionEvent, t: number): Detection | undefined {
    const rule = this.rule;
    if (!rule.match.test(event)) return undefined;
    let value = this.distinct(event);
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'object') value = JSON.stringify(value);
    const key = rule.groupKey(event);
    let s = this.groups.get(key);
    if (s === undefined) {
      s = { values: new Map(), evidence: [], cooldownUntil: -Infinity };
      this.groups.set(key, s);
    }
    const values = s.values;
    values.delete(value);
    values.set(value, t);
    const horizon = t - rule.windowMs;
    for (const [v, seen] of values) {
      if (seen >= horizon) break;
      values.delete(v);
    }
    const evidence = s.evidence;
    if (evidence.length === this.maxEvidence) evidence.shift();
    evidence.push({ seq: event.seq, t });
    if (values.size < rule.count) return undefined;
    let first = t;
    for (const seen of values.values()) {
      first = seen;
      break;
    }
    const count = values.size;
    const events = evidence.filter((e) => e.t >= horizon).map((e) => e.seq);
    values.clear();
    s.evidence = [];
    if (t < s.cooldownUntil) return undefined;
    s.cooldownUntil = t + rule.cooldownMs;
    return this.detection(event, events, first, t, count);
  }

  get groupCount(): number {
    return this.groups.size;
  }
}

interface SequenceState {
  /** chains[k]: the latest-starting chain that completed steps 0..k (k < steps - 1). */
  chains: ({ start: number; seqs: number[] } | undefined)[];
  cooldownUntil: number;
}

class SequenceRuntime extends Runtime {
  private readonly groups: GroupTable<SequenceState>;
  constructor(
    override readonly rule: CompiledSequenceRule,
    maxGroups: number,
    maxEvidence: number,
  ) {
    super(rule, maxGroups, maxEvidence);
    this.groups = new GroupTable<SequenceState>(maxGroups);
  }

  process(event: DetectionEvent, t: number): Detection | undefined {
    const rule = this.rule;
    const steps = rule.steps;
    const last = steps.length - 1;
    const kind = event.kind;
    let key: string | undefined;
    let s: SequenceState | undefined;
    for (let j = last; j >= 0; j--) {
      const step = steps[j]!;
      if (!step.kindTest(kind) || !step.test(event)) continue;
      if (key === undefined) {
        key = rule.groupKey(event);
        s = this.groups.get(key);
      }
      if (j === 0) {
        if (s === undefined) {
          s = { chains: new Array<undefined>(last).fill(undefined), cooldownUntil: -Infinity };
          this.groups.set(key, s);
        }
        s.chains[0] = { start: t, seqs: [event.seq] };
        continue;
      }
      if (s === undefined) continue;
      const chain = s.chains[j - 1];
      if (chain === undefined) continue;
      if (t - chain.start > rule.windowMs) {
        s.chains[j - 1] = undefined;
        continue;
      }
      if (j === last) {
        const seqs = [...chain.seqs, event.seq];
        s.chains.fill(undefined);
        if (t < s.cooldownUntil) return undefined;
        s.cooldownUntil = t + rule.cooldownMs;
        return this.detection(event, seqs.slice(-this.maxEvidence), chain.start, t, steps.length);
      }
      const next = s.chains[j];
      if (next === undefined || next.start <= chain.start)
        s.chains[j] = { start: chain.start, seqs: [...chain.seqs, event.seq] };
    }
    return undefined;
  }

  get groupCount(): number {
    return this.groups.size;
  }
}

function runtimeFor(rule: CompiledRule, maxGroups: number, maxEvidence: number): Runtime {
  switch (rule.type) {
    case 'match':
      return new MatchRuntime(rule, maxGroups, maxEvidence);
    case 'threshold':
      return rule.distinct === null
        ? new CountRuntime(rule, maxGroups, maxEvidence)
        : new DistinctRuntime(rule, maxGroups, maxEvidence);
    case 'sequence':
      return new SequenceRuntime(rule, maxGroups, maxEvidence);
  }
}

/** Kinds cached in the per-kind index before it stops caching new ones (kinds are few in practice). */
const MAX_CACHED_KINDS = 4096;

export class DetectionEngine {
  private readonly maxGroups: number;
  private readonly maxEvidence: number;
  private readonly now: () => number;
  private runtimes: Runtime[] = [];
  private byExactKind = new Map<string, Runtime[]>();
  private byPrefix: { prefix: string; runtime: Runtime }[] = [];
  private byKind = new Map<string, Runtime[]>();
  /** `YYYY-MM-DDTHH:MM:SS.` of the last ISO timestamp parsed, and its epoch ms. */
  private lastSecond = '\u0000';
  private lastSecondMs = 0;

  constructor(rules: CompiledRule[] | string = [], options: DetectionEngineOptions = {}) {
    this.maxGroups = options.maxGroupsPerRule ?? DEFAULT_MAX_GROUPS_PER_RULE;
    this.maxEvidence = options.maxEvidence ?? DEFAULT_MAX_EVIDENCE;
    this.now = options.now ?? Date.now;
    if (!(this.maxGroups >= 1) || !(this.maxEvidence >= 1))
      throw new RangeError('maxGroupsPerRule and maxEvidence must be >= 1');
    if (typeof rules === 'string') {
      const result = parseRuleFile(rules);
      if (!result.ok)
        throw new Error(
          `invalid detection rules: ${result.errors.map((e) => `line ${e.line}:${e.column}: ${e.message}`).join('; ')}`,
        );
      rules = result.rules;
    }
    this.setRules(rules);
  }

  /** Parses `text`; if it is valid, its rules replace the current ones, else they stay. */
  replace(text: string): ParseResult {
    const result = parseRuleFile(text);
    if (result.ok) this.setRules(result.rules);
    return result;
  }

  /** Installs compiled rules, keeping the state of rules with an unchanged definition. */
  setRules(rules: CompiledRule[]): void {
    const previous = new Map(this.runtimes.map((r) => [r.rule.id, r]));
    this.runtimes = rules
      .filter((rule) => rule.enabled)
      .map((rule) => {
        const old = previous.get(rule.id);
        return old !== undefined && old.rule.fingerprint === rule.fingerprint
          ? old
          : runtimeFor(rule, this.maxGroups, this.maxEvidence);
      });
    this.byExactKind = new Map();
    this.byPrefix = [];
    for (const runtime of this.runtimes) {
      const rule = runtime.rule;
      const selectors = rule.type === 'sequence' ? rule.steps.map((s) => s.kinds) : [rule.match.kinds];
      const exact = new Set<string>();
      const prefixes = new Set<string>();
      for (const s of selectors) {
        s.exact.forEach((k) => exact.add(k));
        s.prefixes.forEach((p) => prefixes.add(p));
      }
      for (const kind of exact) {
        const list = this.byExactKind.get(kind) ?? [];
        list.push(runtime);
        this.byExactKind.set(kind, list);
      }
      for (const prefix of prefixes) this.byPrefix.push({ prefix, runtime });
    }
    this.byKind = new Map();
  }

  /** Forgets every window, sequence and cooldown (the rules stay): as if no event had been seen. */
  reset(): void {
    const rules = this.runtimes.map((r) => r.rule);
    this.runtimes = [];
    this.setRules(rules);
  }

  /**
   * How far back events still count: the longest window or cooldown of the active rules. Events older
   * than that (by event time) cannot change what the rules will detect next.
   */
  get memoryMs(): number {
    let longest = 0;
    for (const { rule } of this.runtimes) {
      longest = Math.max(longest, rule.cooldownMs, rule.type === 'match' ? 0 : rule.windowMs);
    }
    return longest;
  }

  /** The ids of the active (enabled) rules. */
  get ruleIds(): string[] {
    return this.runtimes.map((r) => r.rule.id);
  }

  /** Groups held per rule id (for metrics). */
  groupCounts(): Record<string, number> {
    return Object.fromEntries(this.runtimes.map((r) => [r.rule.id, r.groupCount]));
  }

  private rulesFor(kind: string): Runtime[] {
    const found = this.byKind.get(kind);
    if (found !== undefined) return found;
    const list = [...(this.byExactKind.get(kind) ?? [])];
    for (const { prefix, runtime } of this.byPrefix) {
      if (kind.startsWith(prefix) && !list.includes(runtime)) list.push(runtime);
    }
    // Keep the file's order, so detections come out in rule order.
    list.sort((a, b) => this.runtimes.indexOf(a) - this.runtimes.indexOf(b));
    if (this.byKind.size < MAX_CACHED_KINDS) this.byKind.set(kind, list);
    return list;
  }

  private eventTime(event: DetectionEvent): number {
    const at = event.occurredAt;
    if (at === undefined) return this.now();
    // Fast path for toISOString() timestamps (`YYYY-MM-DDTHH:MM:SS.sssZ`) within the second of the
    // previous one: only the milliseconds are read.
    if (
      at.length === 24 &&
      at.charCodeAt(23) === 90 &&
      at.charCodeAt(19) === 46 &&
      at.startsWith(this.lastSecond)
    ) {
      const a = at.charCodeAt(20) - 48;
      const b = at.charCodeAt(21) - 48;
      const c = at.charCodeAt(22) - 48;
      if (a >= 0 && a <= 9 && b >= 0 && b <= 9 && c >= 0 && c <= 9)
        return this.lastSecondMs + a * 100 + b * 10 + c;
    }
    const ms = Date.parse(at);
    if (Number.isNaN(ms)) return this.now();
    if (at.length === 24 && at.charCodeAt(23) === 90 && at.charCodeAt(19) === 46) {
      this.lastSecond = at.slice(0, 20);
      this.lastSecondMs = ms - (((ms % 1000) + 1000) % 1000);
    }
    return ms;
  }

  /**
   * Runs one event through the rules that can match its kind. `timeMs`: the event time in epoch ms
   * (default: occurredAt, else the clock). Events should arrive in time order per group.
   */
  process(event: DetectionEvent, timeMs?: number): readonly Detection[] {
    const list = this.rulesFor(event.kind);
    if (list.length === 0) return NO_DETECTIONS;
    const t = timeMs ?? this.eventTime(event);
    let out: Detection[] | undefined;
    for (let i = 0; i < list.length; i++) {
      const d = list[i]!.process(event, t);
      if (d !== undefined) (out ??= []).push(d);
    }
    return out ?? NO_DETECTIONS;
  }
}
