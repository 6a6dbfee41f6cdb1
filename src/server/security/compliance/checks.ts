/**
 * The checks of the compliance benchmark: each a small function over the database (and a few files and
 * services) answering passed or failed, a short evidence sentence, and the offending objects.
 *
 * A check that throws is reported as failed with the error as its evidence (see runChecks): a benchmark
 * that cannot look is not a benchmark that passes.
 */
import { statSync } from 'node:fs';
import type { ComplianceCheckResult } from '../../../api/compliance.js';
import type { AuditVerification } from '../../../api/audit.js';
import type { HostFirewall, PortIntent } from '../../../api/host-network.js';
import type { VmHardening } from '../../../api/hardening.js';
import { getTrustPolicy } from '../../images/trust-store.js';
import { parseCidr } from '../../network/ipv4.js';
import type { QuotaLimits } from '../../quota/quota-service.js';
import { UNLIMITED } from '../../quota/quota-service.js';
import type { Db } from '../../store/database.js';

/** Offending objects kept per check. */
export const MAX_OFFENDING = 50;
/** How long a successful audit chain verification counts. */
export const AUDIT_VERIFICATION_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** Ports that must never be open to the whole Internet (SSH, RDP, VNC, Docker, Kubernetes, kubelet). */
export const ADMIN_PORTS: readonly (readonly [number, number])[] = [
  [22, 22],
  [2375, 2376],
  [3389, 3389],
  [5900, 5999],
  [6443, 6443],
  [10250, 10250],
];
/** allowedAddresses wider than this prefix length defeat anti-spoofing. */
export const MIN_ALLOWED_PREFIX = 8;

export interface ComplianceDeps {
  db: Db;
  /** The hardening self-check of a VM (VmService.hardening). */
  hardening(vmId: string): Promise<VmHardening>;
  /** The firewall intent of a host (NetworkService.firewallFor). */
  firewallFor(hostId: string): Promise<HostFirewall>;
  portIntents(vmId: string): Promise<PortIntent[]>;
  /** The effective quota limits of a tenant (QuotaService.limits). */
  quotaLimits(tenantId: string): Promise<QuotaLimits>;
  /** Verification of the audit chain, with its time (the service caches a recent success). */
  auditVerification(maxAgeMs: number): Promise<{ at: string; result: AuditVerification }>;
  /** Where the master key comes from (LoadedMasterKey). */
  masterKey: { source: 'env' | 'file' | 'created'; path?: string };
  /** The server's uid (process.getuid). */
  uid: number;
  now(): number;
}

export interface CheckOutcome {
  passed: boolean;
  evidence: string;
  offending: unknown[];
}

export interface ComplianceCheck {
  id: string;
  title: string;
  severity: 'high' | 'medium';
  run(deps: ComplianceDeps): Promise<CheckOutcome>;
}

function outcome(offending: unknown[], passText: string, failText: (n: number) => string): CheckOutcome {
  return offending.length === 0
    ? { passed: true, evidence: passText, offending: [] }
    : {
        passed: false,
        evidence: failText(offending.length),
        offending: offending.slice(0, MAX_OFFENDING),
      };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

async function signaturesRequired(deps: ComplianceDeps): Promise<CheckOutcome> {
  const tenants = await deps.db.selectFrom('tenants').select(['id', 'name']).orderBy('name').execute();
  const offending: unknown[] = [];
  for (const tenant of tenants) {
    const policy = await getTrustPolicy(deps.db, tenant.id);
    if (!policy.requireSignatures)
      offending.push({ type: 'tenant', id: tenant.id, name: tenant.name, requireSignatures: false });
  }
  return outcome(
    offending,
    `all ${plural(tenants.length, 'tenant')} require image signatures`,
    (n) => `${plural(n, 'tenant')} accept unsigned images`,
  );
}

async function imagesScannedClean(deps: ComplianceDeps): Promise<CheckOutcome> {
  const active = await deps.db
    .selectFrom('images')
    .select(['id', 'name', 'tenantId', 'status', 'scanVerdict'])
    .where('status', '=', 'active')
    .execute();
  const offending: unknown[] = [];
  for (const image of active)
    if (image.scanVerdict !== 'clean')
      offending.push({
        type: 'image',
        id: image.id,
        name: image.name,
        tenantId: image.tenantId,
        status: image.status,
        scanVerdict: image.scanVerdict ?? 'unscanned',
      });
  // Images that are not usable (quarantined, error) but still back a VM.
  const inUse = await deps.db
    .selectFrom('vms')
    .innerJoin('images', 'images.id', 'vms.imageId')
    .select(['vms.id as vmId', 'vms.name as vmName', 'images.id', 'images.name', 'images.tenantId'])
    .select(['images.status', 'images.scanVerdict'])
    .where('vms.state', '!=', 'deleting')
    .where('images.status', '!=', 'active')
    .execute();
  for (const row of inUse)
    offending.push({
      type: 'image',
      id: row.id,
      name: row.name,
      tenantId: row.tenantId,
      status: row.status,
      scanVerdict: row.scanVerdict ?? 'unscanned',
      usedBy: { type: 'vm', id: row.vmId, name: row.vmName },
    });
  return outcome(
    offending,
    `all ${plural(active.length, 'active image')} scanned clean; no VM uses a quarantined or failed image`,
    (n) => `${plural(n, 'image')} not scanned clean (or not active but in use)`,
  );
}

async function qemuConfined(deps: ComplianceDeps): Promise<CheckOutcome> {
  const running = await deps.db
    .selectFrom('vms')
    .select(['id', 'name', 'tenantId', 'hostId'])
    .where('state', '=', 'running')
    .orderBy('createdAt')
    .execute();
  const offending: unknown[] = [];
  const BATCH = 8;
  for (let i = 0; i < running.length; i += BATCH) {
    const batch = running.slice(i, i + BATCH);
    const verdicts = await Promise.all(
      batch.map(async (vm) => {
        try {
          const hardening = await deps.hardening(vm.id);
          const failed = hardening.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
          return failed.length === 0 ? null : failed;
        } catch (error) {
          return [`host unreachable: ${(error as Error).message}`];
        }
      }),
    );
    batch.forEach((vm, k) => {
      const failed = verdicts[k];
      if (failed)
        offending.push({
          type: 'vm',
          id: vm.id,
          name: vm.name,
          tenantId: vm.tenantId,
          hostId: vm.hostId,
          failed,
        });
    });
  }
  return outcome(
    offending,
    `the QEMU of all ${plural(running.length, 'running VM')} passes its hardening self-check`,
    (n) => `${plural(n, 'running VM')} failed the hardening self-check`,
  );
}

/** True when [min, max] (null: every port) overlaps an admin port range. */
export function coversAdminPort(portMin: number | null, portMax: number | null): boolean {
  const lo = portMin ?? 0;
  const hi = portMax ?? portMin ?? 65_535;
  return ADMIN_PORTS.some(([a, b]) => lo <= b && hi >= a);
}

/** True for a CIDR that means "anywhere" (prefix length 0). */
function isWorld(cidr: string | null): boolean {
  if (cidr === null) return false;
  return /\/0$/.test(cidr.trim());
}

async function noAdminPortsOpenToWorld(deps: ComplianceDeps): Promise<CheckOutcome> {
  const rules = await deps.db
    .selectFrom('securityGroupRules')
    .innerJoin('securityGroups', 'securityGroups.id', 'securityGroupRules.groupId')
    .select([
      'securityGroupRules.id',
      'securityGroupRules.protocol',
      'securityGroupRules.portMin',
      'securityGroupRules.portMax',
      'securityGroupRules.remoteCidr',
      'securityGroups.id as groupId',
      'securityGroups.name as groupName',
      'securityGroups.tenantId',
    ])
    .where('securityGroupRules.direction', '=', 'ingress')
    .where('securityGroupRules.protocol', 'in', ['tcp', 'any'])
    .where('securityGroupRules.remoteCidr', 'is not', null)
    .orderBy('securityGroups.name')
    .execute();
  const offending = rules
    .filter((r) => isWorld(r.remoteCidr) && coversAdminPort(r.portMin, r.portMax))
    .map((r) => ({
      type: 'security-group-rule',
      id: r.id,
      group: { id: r.groupId, name: r.groupName },
      tenantId: r.tenantId,
      protocol: r.protocol,
      ports: r.portMin === null ? 'all' : `${r.portMin}-${r.portMax ?? r.portMin}`,
      remoteCidr: r.remoteCidr,
    }));
  return outcome(
    offending,
    'no ingress rule opens an admin port to 0.0.0.0/0',
    (n) =>
      `${plural(n, 'ingress rule')} open admin ports to 0.0.0.0/0 (groups: ${[
        ...new Set(offending.map((o) => o.group.name)),
      ].join(', ')})`,
  );
}

async function mfaOnAdmins(deps: ComplianceDeps): Promise<CheckOutcome> {
  const rows = await deps.db
    .selectFrom('roleBindings')
    .innerJoin('users', 'users.id', 'roleBindings.userId')
    .select(['users.id', 'users.username', 'roleBindings.role', 'roleBindings.scope', 'users.totpSecret'])
    .where('roleBindings.role', 'in', ['platform-admin', 'tenant-admin'])
    .where('users.disabled', '=', 0)
    .orderBy('users.username')
    .execute();
  const admins = new Set(rows.map((r) => r.id));
  const missing = new Map<string, { type: string; id: string; username: string; roles: string[] }>();
  for (const row of rows) {
    if (row.totpSecret !== null) continue;
    const entry = missing.get(row.id) ?? { type: 'user', id: row.id, username: row.username, roles: [] };
    entry.roles.push(row.scope === '' ? `${row.role} (platform)` : `${row.role} (tenant ${row.scope})`);
    missing.set(row.id, entry);
  }
  return outcome(
    [...missing.values()],
    `all ${plural(admins.size, 'enabled admin')} have TOTP enrolled`,
    (n) => `${plural(n, 'enabled admin')} without TOTP`,
  );
}

async function quotasSet(deps: ComplianceDeps): Promise<CheckOutcome> {
  const tenants = await deps.db.selectFrom('tenants').select(['id', 'name']).orderBy('name').execute();
  const offending: unknown[] = [];
  for (const tenant of tenants) {
    const limits = await deps.quotaLimits(tenant.id);
    const unlimited = Object.entries(limits)
      .filter(([, limit]) => limit === UNLIMITED)
      .map(([resource]) => resource);
    if (unlimited.length > 0) offending.push({ type: 'tenant', id: tenant.id, name: tenant.name, unlimited });
  }
  return outcome(
    offending,
    `every limit of all ${plural(tenants.length, 'tenant')} is finite`,
    (n) => `${plural(n, 'tenant')} with unlimited quota`,
  );
}

async function auditChainVerified(deps: ComplianceDeps): Promise<CheckOutcome> {
  const { at, result } = await deps.auditVerification(AUDIT_VERIFICATION_MAX_AGE_MS);
  if (result.ok)
    return {
      passed: true,
      evidence: `audit chain verified at ${at} (${plural(result.records, 'record')}, ${plural(result.checkpoints, 'checkpoint')})`,
      offending: [],
    };
  return {
    passed: false,
    evidence: `audit chain verification failed at ${at}: ${result.firstBad ? `${result.firstBad.kind} ${result.firstBad.index}: ${result.firstBad.reason}` : 'unknown'}`,
    offending: result.firstBad ? [{ type: 'audit', ...result.firstBad }] : [],
  };
}

async function masterKeyPrivate(deps: ComplianceDeps): Promise<CheckOutcome> {
  const { source, path } = deps.masterKey;
  if (source === 'env' || path === undefined)
    return {
      passed: true,
      evidence: 'the master key comes from RAMPART_MASTER_KEY (no key file)',
      offending: [],
    };
  let mode: number;
  let uid: number;
  try {
    const stat = statSync(path);
    mode = stat.mode & 0o777;
    uid = stat.uid;
  } catch (error) {
    return {
      passed: false,
      evidence: `the master key file cannot be inspected: ${(error as Error).message}`,
      offending: [{ type: 'file', path }],
    };
  }
  const problems: string[] = [];
  if ((mode & 0o077) !== 0)
    problems.push(`mode ${mode.toString(8).padStart(4, '0')} (group/others have access)`);
  if (uid !== deps.uid) problems.push(`owned by uid ${uid}, not the server's uid ${deps.uid}`);
  if (problems.length === 0)
    return {
      passed: true,
      evidence: `${path}: mode ${mode.toString(8).padStart(4, '0')}, owned by the server`,
      offending: [],
    };
  return {
    passed: false,
    evidence: `${path}: ${problems.join('; ')}`,
    offending: [{ type: 'file', path, mode: mode.toString(8).padStart(4, '0'), uid }],
  };
}

/** True when the CIDR allows more than a /MIN_ALLOWED_PREFIX (0.0.0.0/0 included); unparsable: true. */
export function tooWide(cidr: string): boolean {
  try {
    return parseCidr(cidr).prefixLength < MIN_ALLOWED_PREFIX;
  } catch {
    return true;
  }
}

async function antiSpoofingOnPorts(deps: ComplianceDeps): Promise<CheckOutcome> {
  // VMs that have a tap on their host: placed, not being deleted, not powered off.
  const vms = await deps.db
    .selectFrom('vms')
    .select(['id', 'name', 'tenantId', 'hostId'])
    .where('hostId', 'is not', null)
    .where('state', '!=', 'deleting')
    .where('power', '!=', 'stopped')
    .execute();
  const intents = new Map<string, Set<string>>();
  const offending: unknown[] = [];
  let checked = 0;
  for (const vm of vms) {
    const hostId = vm.hostId!;
    let onHost = intents.get(hostId);
    if (!onHost) {
      onHost = new Set((await deps.firewallFor(hostId)).ports.map((p) => p.id));
      intents.set(hostId, onHost);
    }
    for (const port of await deps.portIntents(vm.id)) {
      checked++;
      const problems: string[] = [];
      if (!onHost.has(port.id)) problems.push("missing from its host's firewall intent");
      const wide = port.allowedAddresses.filter(tooWide);
      if (wide.length > 0)
        problems.push(`allowed addresses wider than /${MIN_ALLOWED_PREFIX}: ${wide.join(', ')}`);
      if (problems.length > 0)
        offending.push({
          type: 'port',
          id: port.id,
          ipv4: port.ipv4,
          vm: { id: vm.id, name: vm.name },
          tenantId: vm.tenantId,
          hostId,
          problems,
        });
    }
  }
  // A port whose VM is stopped has no firewall rules, but a too-wide allowance still waits for it.
  const stored = await deps.db
    .selectFrom('ports')
    .select(['id', 'vmId', 'tenantId', 'allowedAddresses'])
    .execute();
  const seen = new Set(offending.map((o) => (o as { id: string }).id));
  for (const port of stored) {
    if (seen.has(port.id)) continue;
    const wide = (JSON.parse(port.allowedAddresses) as string[]).filter(tooWide);
    if (wide.length > 0)
      offending.push({
        type: 'port',
        id: port.id,
        vm: { id: port.vmId },
        tenantId: port.tenantId,
        problems: [`allowed addresses wider than /${MIN_ALLOWED_PREFIX}: ${wide.join(', ')}`],
      });
  }
  return outcome(
    offending,
    `all ${plural(checked, 'port')} of running VMs are in their host's firewall intent; no allowance wider than /${MIN_ALLOWED_PREFIX}`,
    (n) => `${plural(n, 'port')} without effective anti-spoofing`,
  );
}

/** A remote host's certificate must stay valid at least this long (it is renewed 30 days ahead). */
export const HOST_CERTIFICATE_MIN_REMAINING_MS = 7 * 24 * 60 * 60 * 1000;

async function hostCertificatesCurrent(deps: ComplianceDeps): Promise<CheckOutcome> {
  // Every host that joined and was not revoked (a host whose certificates are all revoked is gone).
  const rows = await deps.db
    .selectFrom('hostCertificates')
    .select(['hostId', 'hostname', 'notAfter'])
    .where('revokedAt', 'is', null)
    .orderBy('hostname')
    .execute();
  const latest = new Map<string, { hostname: string; notAfter: string }>();
  for (const row of rows) {
    const known = latest.get(row.hostId);
    if (!known || row.notAfter > known.notAfter)
      latest.set(row.hostId, { hostname: row.hostname, notAfter: row.notAfter });
  }
  const limit = deps.now() + HOST_CERTIFICATE_MIN_REMAINING_MS;
  const offending: unknown[] = [];
  for (const [id, host] of latest)
    if (Date.parse(host.notAfter) <= limit)
      offending.push({
        type: 'host',
        id,
        hostname: host.hostname,
        notAfter: host.notAfter,
        problem: Date.parse(host.notAfter) <= deps.now() ? 'expired' : 'expires within 7 days',
      });
  return outcome(
    offending,
    `all ${plural(latest.size, 'remote host')} hold a certificate valid for more than 7 days`,
    (n) =>
      `${plural(n, 'remote host')} with a certificate expired or expiring within 7 days (renewal is not working)`,
  );
}

export const COMPLIANCE_CHECKS: readonly ComplianceCheck[] = [
  {
    id: 'signatures-required',
    title: "Every tenant's image trust policy requires signatures",
    severity: 'high',
    run: signaturesRequired,
  },
  {
    id: 'images-scanned-clean',
    title: 'Every active image scanned clean; no VM on a quarantined or failed image',
    severity: 'high',
    run: imagesScannedClean,
  },
  {
    id: 'qemu-confined',
    title: "Every running VM's QEMU passes its hardening self-check",
    severity: 'high',
    run: qemuConfined,
  },
  {
    id: 'no-admin-ports-open-to-world',
    title: 'No security group opens admin ports (SSH, RDP, VNC, Docker, Kubernetes) to 0.0.0.0/0',
    severity: 'high',
    run: noAdminPortsOpenToWorld,
  },
  {
    id: 'mfa-on-admins',
    title: 'Every enabled platform or tenant admin has TOTP enrolled',
    severity: 'high',
    run: mfaOnAdmins,
  },
  {
    id: 'quotas-set',
    title: 'No tenant has an unlimited quota',
    severity: 'medium',
    run: quotasSet,
  },
  {
    id: 'audit-chain-verified',
    title: 'The audit chain verified successfully within the last 24 hours',
    severity: 'high',
    run: auditChainVerified,
  },
  {
    id: 'master-key-private',
    title: 'The master key file is private to the server (no group/other access, owned by its uid)',
    severity: 'high',
    run: masterKeyPrivate,
  },
  {
    id: 'anti-spoofing-on-ports',
    title: "Every port of a running VM is in its host's firewall intent, with no over-wide allowance",
    severity: 'high',
    run: antiSpoofingOnPorts,
  },
  {
    id: 'host-certificates-current',
    title: 'Every remote host holds a certificate valid for more than 7 days (renewal works)',
    severity: 'medium',
    run: hostCertificatesCurrent,
  },
];

/** Runs every check; a check that throws fails with its error as the evidence. */
export async function runChecks(
  deps: ComplianceDeps,
  checks: readonly ComplianceCheck[] = COMPLIANCE_CHECKS,
): Promise<ComplianceCheckResult[]> {
  const results: ComplianceCheckResult[] = [];
  for (const check of checks) {
    let result: CheckOutcome;
    try {
      result = await check.run(deps);
    } catch (error) {
      result = {
        passed: false,
        evidence: `the check could not run: ${(error as Error).message}`,
        offending: [],
      };
    }
    results.push({ id: check.id, title: check.title, severity: check.severity, ...result });
  }
  return results;
}
