/**
 * Authorization benchmark: Rampart's PolicyEngine against node-casbin (RBAC with domains) on the same
 * realistic policy, in the same process.
 *
 *   npm run build && node dist/bench/authz.bench.js
 *   RAMPART_BENCH_DECISIONS=500000 node dist/bench/authz.bench.js
 *   RAMPART_BENCH_CASBIN_SECONDS=600 node dist/bench/authz.bench.js   # let casbin do all of them
 *
 * The policy: 10 tenants with 3 custom roles each (same names, different permissions per tenant),
 * 1,000 users bound to 1-3 built-in or custom roles in 1-2 tenants, 5 platform admins and 3
 * platform-wide auditors. Casbin gets the same policy: one domain per tenant plus `@platform` for the
 * platform scope; a permission `a:b` is object `a`, action `b` (`platform:a:b` is `platform:a`, `b`); a
 * built-in role's tenant permissions are listed in every tenant domain, its platform permissions
 * (with the engine's `x:y` -> `platform:x:y` lifting) in `@platform`; a platform binding is expanded
 * into one `g` line per tenant plus one for `@platform`. Before timing, both engines must agree on
 * 10,000 random queries, or the run fails.
 *
 * Timed: the same 200k random queries (about 40% allowed) through each engine, after a warm-up.
 * Casbin evaluates its matcher against every policy line per decision (~1.8 ms each on this policy,
 * 200k would take minutes), so it stops after a time budget (20 s) and its rate is measured over the
 * decisions it made; the allowed counts of both engines are compared over that same prefix. Then
 * PolicyEngine.can once more with every call timed by process.hrtime.bigint() (the timer's own cost
 * is included, so the p99 is an upper bound). Targets: PolicyEngine at least 10x
 * casbin's decisions/s, and its p99 under 20 µs. A miss is reported, not failed: the exit code is 0
 * unless something broke.
 */
import { newEnforcer, newModelFromString, StringAdapter, type Enforcer } from 'casbin';
import {
  ALL_PERMISSIONS,
  BUILT_IN_ROLES,
  builtInPermissions,
  isPermission,
  isPlatformPermission,
  TENANT_PERMISSIONS,
  type BuiltInRole,
  type Permission,
} from '../src/server/iam/permissions.js';
import {
  PolicyEngine,
  type CustomRole,
  type PolicySnapshot,
  type RoleBinding,
} from '../src/server/iam/policy-engine.js';
import { prng } from './lib/stats.js';

const TENANTS = 10;
const USERS = 1000;
const CUSTOM_ROLE_NAMES = ['deployer', 'observer', 'night-shift'] as const;
const PLATFORM_ADMINS = 5;
const PLATFORM_AUDITORS = 3;
const AGREEMENT_SAMPLE = 10_000;
const TARGET_RATIO = 10;
const TARGET_P99_US = 20;
const PLATFORM_DOMAIN = '@platform';
/** Built-in roles a tenant binding may use (platform-admin only makes sense platform-wide). */
const TENANT_ROLES = BUILT_IN_ROLES.filter((r) => r !== 'platform-admin');

const CASBIN_MODEL = `
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
`;

interface Query {
  userId: string;
  tenantId: string | null;
  permission: Permission;
  /** The same query in casbin's terms. */
  dom: string;
  obj: string;
  act: string;
}

const random = prng(0x5eed);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
function sample<T>(items: readonly T[], n: number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, n);
}

function numberFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name] ?? String(fallback);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

// ------------------------------------------------------------------ the policy

const tenantIds = Array.from({ length: TENANTS }, (_, i) => `tenant-${String(i).padStart(2, '0')}`);

function buildPolicy(): { snapshot: PolicySnapshot; homeTenants: Map<string, string[]>; userIds: string[] } {
  const customRoles: CustomRole[] = [];
  for (const tenantId of tenantIds) {
    for (const name of CUSTOM_ROLE_NAMES) {
      customRoles.push({ tenantId, name, permissions: sample(TENANT_PERMISSIONS, 3 + int(8)) });
    }
  }
  const bindings: RoleBinding[] = [];
  const homeTenants = new Map<string, string[]>();
  const userIds: string[] = [];
  for (let u = 0; u < USERS; u++) {
    const userId = `user-${String(u).padStart(4, '0')}`;
    userIds.push(userId);
    const tenants = sample(tenantIds, 1 + int(2));
    homeTenants.set(userId, tenants);
    for (const tenantId of tenants) {
      const roles = sample<string>([...TENANT_ROLES, ...CUSTOM_ROLE_NAMES], 1 + int(3));
      for (const role of roles) bindings.push({ userId, tenantId, role });
    }
  }
  for (let i = 0; i < PLATFORM_ADMINS; i++) {
    const userId = `admin-${i}`;
    userIds.push(userId);
    bindings.push({ userId, tenantId: null, role: 'platform-admin' });
  }
  for (let i = 0; i < PLATFORM_AUDITORS; i++) {
    const userId = `platform-auditor-${i}`;
    userIds.push(userId);
    bindings.push({ userId, tenantId: null, role: 'auditor' });
    // Some platform users also hold a tenant role of their own.
    if (i === 0) bindings.push({ userId, tenantId: tenantIds[0]!, role: 'operator' });
  }
  return { snapshot: { bindings, customRoles }, homeTenants, userIds };
}

function casbinTerms(permission: string): { obj: string; act: string } {
  const cut = permission.lastIndexOf(':');
  return { obj: permission.slice(0, cut), act: permission.slice(cut + 1) };
}

/** What a platform-wide binding of `role` grants at platform scope (the engine's lifting rule). */
function platformScope(role: BuiltInRole): Set<Permission> {
  const granted = new Set<Permission>();
  for (const permission of builtInPermissions(role)) {
    granted.add(permission);
    const lifted = `platform:${permission}`;
    if (!isPlatformPermission(permission) && isPermission(lifted)) granted.add(lifted);
  }
  return granted;
}

/** The snapshot as casbin CSV policy lines. */
function casbinPolicy(snapshot: PolicySnapshot): string {
  const lines: string[] = [];
  const p = (sub: string, dom: string, permission: string): void => {
    const { obj, act } = casbinTerms(permission);
    lines.push(`p, ${sub}, ${dom}, ${obj}, ${act}`);
  };
  for (const role of BUILT_IN_ROLES) {
    const tenantScoped = builtInPermissions(role).filter((x) => !isPlatformPermission(x));
    for (const tenantId of tenantIds) for (const permission of tenantScoped) p(role, tenantId, permission);
    for (const permission of platformScope(role)) p(role, PLATFORM_DOMAIN, permission);
  }
  for (const role of snapshot.customRoles) {
    for (const permission of role.permissions) {
      if (isPermission(permission) && !isPlatformPermission(permission))
        p(role.name, role.tenantId, permission);
    }
  }
  for (const binding of snapshot.bindings) {
    const domains = binding.tenantId === null ? [...tenantIds, PLATFORM_DOMAIN] : [binding.tenantId];
    for (const dom of domains) lines.push(`g, ${binding.userId}, ${binding.role}, ${dom}`);
  }
  return lines.join('\n');
}

// ------------------------------------------------------------------ queries

const platformPermissions = ALL_PERMISSIONS.filter((p) => isPlatformPermission(p));

function makeQueries(n: number, userIds: readonly string[], homeTenants: Map<string, string[]>): Query[] {
  const queries: Query[] = [];
  for (let i = 0; i < n; i++) {
    const userId = pick(userIds);
    const roll = random();
    let tenantId: string | null;
    let permission: Permission;
    if (roll < 0.08) {
      tenantId = null;
      permission = random() < 0.7 ? pick(platformPermissions) : pick(TENANT_PERMISSIONS);
    } else {
      const home = homeTenants.get(userId);
      // Mostly a tenant of the user's own (realistic traffic), sometimes any tenant (denials).
      tenantId = home && roll < 0.75 ? pick(home) : pick(tenantIds);
      permission = random() < 0.97 ? pick(TENANT_PERMISSIONS) : pick(platformPermissions);
    }
    const { obj, act } = casbinTerms(permission);
    queries.push({ userId, tenantId, permission, dom: tenantId ?? PLATFORM_DOMAIN, obj, act });
  }
  return queries;
}

// ------------------------------------------------------------------ timing

function engineRun(engine: PolicyEngine, queries: readonly Query[]): number {
  let allowed = 0;
  for (const q of queries) if (engine.can(q.userId, q.tenantId, q.permission)) allowed++;
  return allowed;
}

interface Run {
  decisions: number;
  allowed: number;
  seconds: number;
}

/**
 * Casbin walks every policy line per decision (milliseconds here), so it runs the queries in order
 * until all are done or `budgetSeconds` have passed, and its rate is measured over what it did.
 */
function casbinRun(enforcer: Enforcer, queries: readonly Query[], budgetSeconds: number): Run {
  const t0 = process.hrtime.bigint();
  const budgetNs = BigInt(Math.round(budgetSeconds * 1e9));
  let allowed = 0;
  let done = 0;
  while (done < queries.length) {
    const end = Math.min(queries.length, done + 500);
    for (; done < end; done++) {
      const q = queries[done]!;
      if (enforcer.enforceSync(q.userId, q.dom, q.obj, q.act)) allowed++;
    }
    if (process.hrtime.bigint() - t0 > budgetNs) break;
  }
  return { decisions: done, allowed, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function engineTimed(engine: PolicyEngine, queries: readonly Query[]): Run {
  const t0 = process.hrtime.bigint();
  const allowed = engineRun(engine, queries);
  return { decisions: queries.length, allowed, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function percentile(sortedNs: BigInt64Array, q: number): number {
  return Number(sortedNs[Math.min(sortedNs.length - 1, Math.floor(q * sortedNs.length))]!) / 1000;
}

/** Per-call latency of PolicyEngine.can, in µs (timer overhead included). */
function engineLatencies(engine: PolicyEngine, queries: readonly Query[]): BigInt64Array {
  const samples = new BigInt64Array(queries.length);
  let allowed = 0;
  for (let i = 0; i < queries.length; i++) {
    const q = queries[i]!;
    const t0 = process.hrtime.bigint();
    if (engine.can(q.userId, q.tenantId, q.permission)) allowed++;
    samples[i] = process.hrtime.bigint() - t0;
  }
  if (allowed < 0) throw new Error('unreachable'); // keeps `allowed` (and the calls) alive
  return samples.sort();
}

function timerOverheadNs(): number {
  const samples = new BigInt64Array(100_000);
  for (let i = 0; i < samples.length; i++) {
    const t0 = process.hrtime.bigint();
    samples[i] = process.hrtime.bigint() - t0;
  }
  samples.sort();
  return Number(samples[samples.length >> 1]!);
}

const fmtCount = (n: number): string => Math.round(n).toLocaleString('en-US');
const rate = (perSecond: number): string => `${fmtCount(perSecond)} decisions/s`;

async function main(): Promise<void> {
  const decisions = numberFromEnv('RAMPART_BENCH_DECISIONS', 200_000, 1000, 10_000_000);
  const casbinBudget = numberFromEnv('RAMPART_BENCH_CASBIN_SECONDS', 20, 1, 3600);
  const { snapshot, homeTenants, userIds } = buildPolicy();

  let t0 = process.hrtime.bigint();
  const engine = new PolicyEngine(snapshot);
  const engineLoadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const policyText = casbinPolicy(snapshot);
  t0 = process.hrtime.bigint();
  const enforcer = await newEnforcer(newModelFromString(CASBIN_MODEL), new StringAdapter(policyText));
  const casbinLoadMs = Number(process.hrtime.bigint() - t0) / 1e6;

  console.log(
    `authz benchmark: ${TENANTS} tenants, ${userIds.length} users, ${snapshot.bindings.length} bindings, ` +
      `${snapshot.customRoles.length} custom roles; casbin: ${policyText.split('\n').length} policy lines`,
  );
  console.log(`load: PolicyEngine ${engineLoadMs.toFixed(1)} ms, casbin ${casbinLoadMs.toFixed(1)} ms`);

  // Same semantics, or the comparison means nothing.
  const agreement = makeQueries(AGREEMENT_SAMPLE, userIds, homeTenants);
  let agreeAllowed = 0;
  for (const q of agreement) {
    const ours = engine.can(q.userId, q.tenantId, q.permission);
    const theirs = enforcer.enforceSync(q.userId, q.dom, q.obj, q.act);
    if (ours !== theirs) {
      throw new Error(
        `engines disagree on ${q.userId} ${q.tenantId ?? '(platform)'} ${q.permission}: PolicyEngine ${ours}, casbin ${theirs}`,
      );
    }
    if (ours) agreeAllowed++;
  }
  console.log(
    `agreement: ${AGREEMENT_SAMPLE.toLocaleString('en-US')} random queries, identical decisions ` +
      `(${((100 * agreeAllowed) / AGREEMENT_SAMPLE).toFixed(0)}% allowed)`,
  );

  const queries = makeQueries(decisions, userIds, homeTenants);
  // Warm-up: JIT both (casbin also ran the agreement sample), and fill the engine's per-tenant caches
  // as a running server would have.
  engineRun(engine, queries);
  casbinRun(enforcer, queries.slice(-1000), casbinBudget);

  const ours = engineTimed(engine, queries);
  const theirs = casbinRun(enforcer, queries, casbinBudget);
  const oursOnTheirs = engineRun(engine, queries.slice(0, theirs.decisions));
  if (oursOnTheirs !== theirs.allowed) {
    throw new Error(`allowed counts differ: PolicyEngine ${oursOnTheirs}, casbin ${theirs.allowed}`);
  }
  const latencies = engineLatencies(engine, queries);
  const overheadNs = timerOverheadNs();

  const ourRate = ours.decisions / ours.seconds;
  const theirRate = theirs.decisions / theirs.seconds;
  const ratio = ourRate / theirRate;
  const p50 = percentile(latencies, 0.5);
  const p99 = percentile(latencies, 0.99);
  const max = percentile(latencies, 1);
  const line = (label: string, value: string): void => console.log(`${label.padEnd(40)} = ${value}`);
  console.log('');
  line(
    'random queries',
    `${decisions.toLocaleString('en-US')} (${((100 * ours.allowed) / decisions).toFixed(0)}% allowed)`,
  );
  line('PolicyEngine.can', `${rate(ourRate)} (${fmtCount(ours.decisions)} in ${ours.seconds.toFixed(3)} s)`);
  line(
    'casbin enforceSync',
    `${rate(theirRate)} (${fmtCount(theirs.decisions)} in ${theirs.seconds.toFixed(1)} s` +
      `${theirs.decisions < decisions ? `, stopped at the ${casbinBudget} s budget` : ''})`,
  );
  line('ratio (PolicyEngine / casbin)', `${ratio.toFixed(1)}x`);
  line(
    'PolicyEngine.can latency per call',
    `p50 ${p50.toFixed(2)} µs, p99 ${p99.toFixed(2)} µs, max ${max.toFixed(1)} µs ` +
      `(includes ~${overheadNs} ns timer overhead)`,
  );
  const verdict = (pass: boolean): string => (pass ? 'PASS' : 'MISS');
  console.log(
    `verdict: ${verdict(ratio >= TARGET_RATIO)} ratio >= ${TARGET_RATIO}x (got ${ratio.toFixed(1)}x)`,
  );
  console.log(
    `verdict: ${verdict(p99 < TARGET_P99_US)} p99 < ${TARGET_P99_US} µs (got ${p99.toFixed(2)} µs)`,
  );
}

main().catch((error: unknown) => {
  console.error(
    `authz benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exitCode = 1;
});
