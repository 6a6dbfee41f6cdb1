/**
 * Security events made from what the control plane sees (the stable schema is documented in
 * security-events.ts and detection/shipped-rules.ts): login attempts and unexpected QEMU exits.
 */
import type { RequestDenial } from '../http/access-control.js';
import type { AuditEntry } from '../audit/audit-log.js';
import type { Principal } from '../iam/principal.js';
import type { LoginAttempt } from '../iam/authenticator.js';
import type { VmsTable } from '../store/schema.js';
import type { SecurityEventInput } from './security-events.js';

/** auth.login_failed / auth.login_succeeded: who, from where, why not (never the password). */
export function loginEvent(attempt: LoginAttempt): SecurityEventInput {
  return attempt.ok
    ? {
        kind: 'auth.login_succeeded',
        severity: 'info',
        tenantId: null,
        subjectType: 'user',
        subjectId: attempt.userId,
        summary: `login of ${attempt.username} from ${attempt.sourceIp}`,
        detail: {
          username: attempt.username,
          sourceIp: attempt.sourceIp,
          userId: attempt.userId,
          mfa: attempt.mfa,
        },
      }
    : {
        kind: 'auth.login_failed',
        severity: 'low',
        tenantId: null,
        subjectType: 'user',
        subjectId: attempt.userId,
        summary: `failed login for ${attempt.username} from ${attempt.sourceIp} (${attempt.reason ?? 'unknown'})`,
        detail: { username: attempt.username, sourceIp: attempt.sourceIp, reason: attempt.reason },
      };
}

const SIGNAL = /killed by (SIG[A-Z0-9]+)/;
const EXIT_CODE = /exit code (\d+)/;

/** vm.exit for a QEMU that went away without being asked to: a crash, a kill, a seccomp kill (SIGSYS). */
export function vmExitEvent(vm: VmsTable, reason: string): SecurityEventInput {
  const signal = SIGNAL.exec(reason)?.[1] ?? null;
  const exitCode = EXIT_CODE.exec(reason)?.[1];
  const kind = signal === 'SIGSYS' ? 'seccomp' : signal !== null ? 'signal' : 'crash';
  return {
    kind: 'vm.exit',
    severity: kind === 'seccomp' ? 'critical' : 'high',
    tenantId: vm.tenantId,
    subjectType: 'vm',
    subjectId: vm.id,
    summary: `QEMU of VM ${vm.name} exited unexpectedly: ${reason}`,
    detail: {
      vmId: vm.id,
      vmName: vm.name,
      hostId: vm.hostId ?? null,
      expected: false,
      reason: kind,
      signal,
      exitCode: exitCode === undefined ? null : Number(exitCode),
      message: reason.slice(0, 512),
    },
  };
}

/**
 * api.denied for every 403/404 an authenticated principal got (id probing), and auth.privilege_denied
 * for a 403 on a route that needs a permission (privilege-escalation attempts).
 */
export function denialEvents(denial: RequestDenial): SecurityEventInput[] {
  const common = {
    principalId: denial.principalId,
    tokenId: denial.tokenId,
    method: denial.method,
    route: denial.route,
    sourceIp: denial.sourceIp,
  };
  const events: SecurityEventInput[] = [
    {
      kind: 'api.denied',
      severity: 'info',
      tenantId: denial.tenantId,
      subjectType: 'user',
      subjectId: denial.principalId,
      summary: `${denial.method} ${denial.route}: ${denial.reason}`,
      detail: { ...common, reason: denial.reason, resourceId: denial.resourceId },
    },
  ];
  if (denial.reason === 'forbidden' && denial.permission !== null)
    events.push({
      kind: 'auth.privilege_denied',
      severity: 'low',
      tenantId: denial.tenantId,
      subjectType: 'user',
      subjectId: denial.principalId,
      summary: `${denial.method} ${denial.route} refused: ${denial.permission} not held`,
      detail: { ...common, permission: denial.permission },
    });
  return events;
}

/** What was copied in a volume.snapshot_created / volume.cloned event. */
export interface VolumeCopy {
  kind: 'volume.snapshot_created' | 'volume.cloned';
  tenantId: string;
  /** The volume whose data was copied. */
  volumeId: string;
  volumeName: string;
  /** The snapshot or the clone. */
  newId: string;
  vmId: string | null;
}

/**
 * volume.snapshot_created / volume.cloned: who copied a tenant's disk. `member`: whether the actor
 * holds a role in the volume's tenant (a platform admin acting in a tenant does not: crossTenant).
 */
export function volumeCopyEvent(copy: VolumeCopy, principal: Principal, member: boolean): SecurityEventInput {
  const verb = copy.kind === 'volume.cloned' ? 'cloned' : 'snapshotted';
  return {
    kind: copy.kind,
    severity: member ? 'info' : 'medium',
    tenantId: copy.tenantId,
    subjectType: 'volume',
    subjectId: copy.volumeId,
    summary: `volume ${copy.volumeName} ${verb} by ${principal.username}${member ? '' : ' (not a member of its tenant)'}`,
    detail: {
      actorId: principal.userId,
      actorName: principal.username,
      actorType: principal.token ? 'token' : 'user',
      tokenId: principal.token?.id ?? null,
      crossTenant: !member,
      volumeId: copy.volumeId,
      newId: copy.newId,
      vmId: copy.vmId,
    },
  };
}

/**
 * Actions that change who may do what, or the platform's security settings: members, roles, users,
 * tenants, quotas, image trust and signing keys, hosts, API tokens, security responses.
 */
const ADMIN_ACTION =
  /^(?:platform:|member:(?:create|delete)|role:(?:create|delete)|tenant:update|image:(?:trust|sign)|token:(?:create|delete)|security:respond)/;

/** admin.change for a successful administrative request (from its audit record), else null. */
export function adminChangeEvent(entry: AuditEntry): SecurityEventInput | null {
  if (entry.outcome !== 'success' || !ADMIN_ACTION.test(entry.action)) return null;
  return {
    kind: 'admin.change',
    severity: 'low',
    tenantId: entry.tenantId,
    subjectType: 'user',
    subjectId: entry.actorId,
    summary: `${entry.actor}: ${entry.action}${entry.target ? ` ${entry.target}` : ''}`,
    detail: {
      actorId: entry.actorId,
      actor: entry.actor,
      action: entry.action,
      target: entry.target,
      detail: entry.detail,
      sourceIp: entry.source,
      requestId: entry.requestId,
    },
  };
}
