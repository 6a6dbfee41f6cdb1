/**
 * How each resource looks for people: the fixed column set of its table and the fields of its detail
 * view. JSON output bypasses all of this and prints the API body unchanged.
 */
import type { AuditRecordView, AuditVerification } from '../api/audit.js';
import type { Flavor } from '../api/flavor.js';
import type { Host } from '../api/host.js';
import type { ApiToken, Role, Tenant, User, WhoAmI } from '../api/iam.js';
import type { Image } from '../api/image.js';
import type { Quota } from '../api/quota.js';
import type { Vm } from '../api/vm.js';
import type { MemberView } from './api-client.js';
import {
  formatAge,
  formatBytes,
  formatDuration,
  formatKeyValue,
  formatMiB,
  formatMiBOf,
  formatTable,
  shortId,
  truncate,
  type Cell,
  type Color,
} from './output.js';

export interface ViewOptions {
  now: number;
  color: boolean;
}

const STATE_COLORS: Record<string, Color> = {
  running: 'green',
  error: 'red',
  stopped: 'dim',
  paused: 'cyan',
  pending: 'yellow',
  starting: 'yellow',
  stopping: 'yellow',
  deleting: 'yellow',
  online: 'green',
  offline: 'red',
  suspected: 'yellow',
  failed: 'red',
  active: 'green',
  disabled: 'red',
  revoked: 'dim',
  expired: 'dim',
  success: 'green',
  denied: 'yellow',
  failure: 'red',
};

function state(value: string): Cell {
  const color = STATE_COLORS[value];
  return color ? { text: value, color } : value;
}

function orDash(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}

function ips(list: readonly string[] | undefined): string {
  return list && list.length > 0 ? list.join(',') : '-';
}

/** `3.1 s` from milliseconds. */
export function formatBootTime(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A CPU cap in percent of one host CPU; null means none beyond the vCPUs. */
function cpuLimit(percent: number | null | undefined, vcpus: number | undefined): string {
  if (typeof percent === 'number') return `${percent}% of one host CPU`;
  if (percent === null && typeof vcpus === 'number') return `none (its ${vcpus} vCPUs: ${vcpus * 100}%)`;
  return '-';
}

function timestamp(iso: string | null | undefined, now: number): string {
  return iso ? `${iso} (${formatAge(iso, now)} ago)` : '-';
}

// ---- VMs

export const VM_COLUMNS = ['NAME', 'STATE', 'FLAVOR', 'IMAGE', 'IPS', 'HOST', 'AGE'] as const;

export function vmRow(vm: Vm, now: number): Cell[] {
  return [
    vm.name,
    state(vm.state),
    vm.flavor?.name ?? '-',
    vm.image?.name ?? '-',
    ips(vm.guestIps),
    shortId(vm.hostId),
    formatAge(vm.createdAt, now),
  ];
}

export function vmTable(vms: readonly Vm[], options: ViewOptions): string {
  return formatTable(
    VM_COLUMNS,
    vms.map((vm) => vmRow(vm, options.now)),
    options.color,
  );
}

export function vmDetails(vm: Vm, options: ViewOptions): string {
  const { now } = options;
  return formatKeyValue(
    [
      ['Name', vm.name],
      ['ID', vm.id],
      ['State', state(vm.state)],
      ['Error', vm.error ? { text: vm.error, color: 'red' } : '-'],
      ['Image', vm.image ? `${vm.image.name} (${vm.image.id})` : '-'],
      [
        'Root disk',
        vm.rootVolume ? `${vm.rootVolume.name} (${vm.rootVolume.id})` : '- (kernel booted directly)',
      ],
      ['Flavor', vm.flavor ? `${vm.flavor.name} (${vm.flavor.id})` : '-'],
      ['vCPUs', orDash(vm.vcpus)],
      ['Memory', typeof vm.memoryMiB === 'number' ? formatMiB(vm.memoryMiB) : '-'],
      ['Disk', typeof vm.diskGiB === 'number' ? `${vm.diskGiB} GiB` : '-'],
      ['CPU limit', cpuLimit(vm.cpuLimitPercent, vm.vcpus)],
      ['CPU weight', orDash(vm.cpuWeight)],
      ['PIDs max', orDash(vm.pidsMax)],
      ['Network limit', vm.networkMbps === null ? '-' : `${vm.networkMbps} Mbit/s per direction`],
      ['Disk limit', diskLimit(vm.diskIops, vm.diskMiBps)],
      ['Pinned CPUs', vm.pinnedCpus ? vm.pinnedCpus.join(',') : 'no (shared pool)'],
      ['Restart policy', orDash(vm.restartPolicy)],
      ['Restarts', orDash(vm.restartCount)],
      ['Host', orDash(vm.hostId)],
      ['Accelerator', orDash(vm.accelerator)],
      ['PID', orDash(vm.pid)],
      ['IPs', vm.guestIps && vm.guestIps.length > 0 ? vm.guestIps.join(', ') : '-'],
      ['Boot time', typeof vm.bootMs === 'number' ? formatBootTime(vm.bootMs) : '-'],
      ['Uptime', typeof vm.guestUptimeSeconds === 'number' ? formatDuration(vm.guestUptimeSeconds) : '-'],
      ['Last heartbeat', timestamp(vm.lastHeartbeatAt, now)],
      ['Created', timestamp(vm.createdAt, now)],
      ['Updated', timestamp(vm.updatedAt, now)],
    ],
    options.color,
  );
}

// ---- images

export const IMAGE_COLUMNS = [
  'NAME',
  'FORMAT',
  'STATUS',
  'SCAN',
  'SIZE',
  'SHA256',
  'AGE',
  'DESCRIPTION',
] as const;

export function imageTable(images: readonly Image[], options: ViewOptions): string {
  return formatTable(
    IMAGE_COLUMNS,
    images.map((image) => [
      image.name,
      image.format,
      image.status,
      image.scan.verdict ?? '-',
      typeof image.sizeBytes === 'number' ? formatBytes(image.sizeBytes) : '-',
      image.sha256 ? image.sha256.slice(0, 12) : '-',
      formatAge(image.createdAt, options.now),
      image.description ? truncate(image.description, 50) : '-',
    ]),
    options.color,
  );
}

export function imageDetails(image: Image, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Name', image.name],
      ['ID', image.id],
      ['Format', image.format],
      [
        'Size',
        typeof image.sizeBytes === 'number'
          ? `${formatBytes(image.sizeBytes)} (${image.sizeBytes} bytes)`
          : '-',
      ],
      ['SHA-256', orDash(image.sha256)],
      ['Status', image.statusReason ? `${image.status} (${image.statusReason})` : image.status],
      [
        'Scan',
        image.scan.verdict === null
          ? '-'
          : `${image.scan.verdict}${image.scan.signatures.length > 0 ? `: ${image.scan.signatures.join(', ')}` : ''} (${orDash(image.scan.engine)}, ${orDash(image.scan.scannedAt)})`,
      ],
      ...Object.entries(image.files).map(([part, sha]): [string, string] => [`File ${part}`, sha]),
      ['Platform signed', image.platformSigned ? 'yes' : 'no'],
      ['Visibility', image.visibility],
      ['Description', orDash(image.description)],
      ['Created', timestamp(image.createdAt, options.now)],
    ],
    options.color,
  );
}

// ---- flavors

export const FLAVOR_COLUMNS = ['NAME', 'VCPUS', 'MEMORY', 'DISK', 'CPU LIMIT', 'AGE'] as const;

export function flavorTable(flavors: readonly Flavor[], options: ViewOptions): string {
  return formatTable(
    FLAVOR_COLUMNS,
    flavors.map((flavor) => [
      flavor.name,
      String(flavor.vcpus),
      formatMiB(flavor.memoryMiB),
      `${flavor.diskGiB} GiB`,
      typeof flavor.cpuLimitPercent === 'number' ? `${flavor.cpuLimitPercent}%` : '-',
      formatAge(flavor.createdAt, options.now),
    ]),
    options.color,
  );
}

function diskLimit(iops: number | null, mibps: number | null): string {
  const parts = [iops === null ? null : `${iops} IOPS`, mibps === null ? null : `${mibps} MiB/s`].filter(
    (p) => p !== null,
  );
  return parts.length > 0 ? `${parts.join(', ')} per disk` : '-';
}

export function flavorDetails(flavor: Flavor, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Name', flavor.name],
      ['ID', flavor.id],
      ['vCPUs', String(flavor.vcpus)],
      ['Memory', `${formatMiB(flavor.memoryMiB)} (${flavor.memoryMiB} MiB)`],
      ['Disk', `${flavor.diskGiB} GiB`],
      ['CPU limit', cpuLimit(flavor.cpuLimitPercent, flavor.vcpus)],
      ['CPU weight', orDash(flavor.cpuWeight)],
      ['PIDs max', orDash(flavor.pidsMax)],
      ['Network limit', flavor.networkMbps === null ? '-' : `${flavor.networkMbps} Mbit/s per direction`],
      ['Disk limit', diskLimit(flavor.diskIops, flavor.diskMiBps)],
      ['CPU policy', flavor.cpuPolicy],
      ['Created', timestamp(flavor.createdAt, options.now)],
    ],
    options.color,
  );
}

// ---- hosts

export const HOST_COLUMNS = ['ID', 'HOSTNAME', 'STATE', 'ACCEL', 'VCPUS', 'MEMORY', 'VMS'] as const;

export function hostRow(host: Host): Cell[] {
  const accel: Cell =
    host.accelerator === 'tcg' ? { text: 'tcg', color: 'yellow' } : orDash(host.accelerator);
  return [
    shortId(host.id),
    host.hostname,
    state(host.state),
    accel,
    `${host.allocated?.vcpus ?? '-'}/${host.capacity?.vcpusAllocatable ?? '-'}`,
    host.allocated && host.capacity
      ? formatMiBOf(host.allocated.memoryMiB, host.capacity.memoryMiBAllocatable)
      : '-',
    orDash(host.allocated?.vms),
  ];
}

export function hostTable(hosts: readonly Host[], options: ViewOptions): string {
  return formatTable(HOST_COLUMNS, hosts.map(hostRow), options.color);
}

export function hostDetails(host: Host, options: ViewOptions): string {
  const { capacity, allocated } = host;
  return formatKeyValue(
    [
      ['ID', host.id],
      ['Hostname', host.hostname],
      ['State', state(host.state)],
      [
        'Accelerator',
        host.acceleratorReason ? `${host.accelerator} (${host.acceleratorReason})` : host.accelerator,
      ],
      ['QEMU', orDash(host.qemuVersion)],
      ['Agent', orDash(host.agentVersion)],
      ['CPUs', orDash(capacity?.cpus)],
      ['Memory', capacity ? formatMiB(capacity.memoryMiB) : '-'],
      [
        'vCPUs used',
        allocated && capacity ? `${allocated.vcpus} of ${capacity.vcpusAllocatable} allocatable` : '-',
      ],
      [
        'Memory used',
        allocated && capacity
          ? `${formatMiB(allocated.memoryMiB)} of ${formatMiB(capacity.memoryMiBAllocatable)} allocatable`
          : '-',
      ],
      [
        'Overcommit',
        host.overcommit
          ? `CPU ${host.overcommit.cpu}x (vCPUs per CPU), memory ${host.overcommit.memory}x`
          : '-',
      ],
      ['VMs', orDash(allocated?.vms)],
      ['Maintenance', host.maintenance ? 'on (no new VMs)' : 'off'],
      ['Last seen', timestamp(host.lastSeenAt, options.now)],
      ['Created', timestamp(host.createdAt, options.now)],
    ],
    options.color,
  );
}

// ---- quotas

export const QUOTA_COLUMNS = ['RESOURCE', 'LIMIT', 'USED', 'SOURCE'] as const;

/** A quota limit for people: -1 is `unlimited`. */
export function formatQuotaLimit(limit: number): string {
  return limit === -1 ? 'unlimited' : String(limit);
}

/**
 * One row per resource, in the API's order. SOURCE tells the tenant's own override from the platform
 * default; usage at the limit is yellow, above it (a limit forced below usage) red.
 */
export function quotaTable(quota: Quota, options: ViewOptions): string {
  return formatTable(
    QUOTA_COLUMNS,
    Object.entries(quota.resources).map(([resource, entry]) => {
      const bounded = entry.limit !== -1;
      const used: Cell =
        bounded && entry.usage > entry.limit
          ? { text: String(entry.usage), color: 'red' }
          : bounded && entry.usage === entry.limit
            ? { text: String(entry.usage), color: 'yellow' }
            : String(entry.usage);
      return [resource, formatQuotaLimit(entry.limit), used, entry.overridden ? 'override' : 'default'];
    }),
    options.color,
  );
}

// ---- identity: whoami, tenants, users, members, roles, API tokens

/** Time until an ISO timestamp: `in 5m`, or `expired` once past. */
export function formatUntil(iso: string | null | undefined, nowMs: number): string {
  if (!iso) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '-';
  return then <= nowMs ? 'expired' : `in ${formatDuration((then - nowMs) / 1000)}`;
}

function list(values: readonly string[] | undefined): string {
  return values && values.length > 0 ? values.join(', ') : '-';
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

export function whoamiDetails(me: WhoAmI, credentials: string, options: ViewOptions): string {
  const pairs: [string, Cell][] = [
    ['User', me.user.username],
    ['ID', me.user.id],
    ['MFA', me.user.mfaEnabled ? 'on' : 'off'],
    ['Via', `${me.via} (${credentials})`],
  ];
  if (me.restriction) {
    const what = me.restriction === 'password-change' ? 'run `rampart password`' : 'run `rampart mfa enrol`';
    pairs.push(['Restriction', { text: `${me.restriction}: ${what}`, color: 'yellow' }]);
  }
  pairs.push(['Platform roles', list(me.platformRoles)]);
  pairs.push(['Tenants', list(me.tenants.map((m) => `${m.tenant.name} (${list(m.roles)})`))]);
  pairs.push(['Tenant', me.tenant ? me.tenant.name : '- (choose one with --tenant)']);
  pairs.push(['Permissions', list(me.permissions)]);
  return formatKeyValue(pairs, options.color);
}

export const TENANT_COLUMNS = ['NAME', 'ID', 'MFA FOR ADMINS', 'AGE'] as const;

export function tenantTable(tenants: readonly Tenant[], options: ViewOptions): string {
  return formatTable(
    TENANT_COLUMNS,
    tenants.map((tenant) => [
      tenant.name,
      shortId(tenant.id),
      tenant.requireMfaForAdmins ? 'required' : '-',
      formatAge(tenant.createdAt, options.now),
    ]),
    options.color,
  );
}

export function tenantDetails(tenant: Tenant, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Name', tenant.name],
      ['ID', tenant.id],
      ['MFA for admins', tenant.requireMfaForAdmins ? 'required' : 'not required'],
      ['Dedicated hosts', tenant.dedicatedHosts ? 'on' : 'off'],
      ['Nested virtualization', tenant.allowNestedVirtualization ? 'allowed' : 'off'],
      ['Created', timestamp(tenant.createdAt, options.now)],
    ],
    options.color,
  );
}

export const USER_COLUMNS = ['USERNAME', 'STATE', 'MFA', 'PASSWORD', 'AGE'] as const;

export function userTable(users: readonly User[], options: ViewOptions): string {
  return formatTable(
    USER_COLUMNS,
    users.map((user) => [
      user.username,
      state(user.disabled ? 'disabled' : 'active'),
      user.mfaEnabled ? 'on' : 'off',
      user.mustChangePassword ? { text: 'must change', color: 'yellow' } : 'set',
      formatAge(user.createdAt, options.now),
    ]),
    options.color,
  );
}

export function userDetails(user: User, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Username', user.username],
      ['ID', user.id],
      ['State', state(user.disabled ? 'disabled' : 'active')],
      ['MFA', user.mfaEnabled ? 'on' : 'off'],
      ['Must change password', yesNo(user.mustChangePassword)],
      ['Password changed', timestamp(user.passwordChangedAt, options.now)],
      ['Created', timestamp(user.createdAt, options.now)],
    ],
    options.color,
  );
}

export const MEMBER_COLUMNS = ['USER', 'ROLES'] as const;

export function memberTable(members: readonly MemberView[], options: ViewOptions): string {
  return formatTable(
    MEMBER_COLUMNS,
    members.map((member) => [member.user.username, list(member.roles)]),
    options.color,
  );
}

export const ROLE_COLUMNS = ['NAME', 'BUILT-IN', 'PERMISSIONS', 'DESCRIPTION'] as const;

export function roleTable(roles: readonly Role[], options: ViewOptions): string {
  return formatTable(
    ROLE_COLUMNS,
    roles.map((role) => [
      role.name,
      yesNo(role.builtIn),
      String(role.permissions.length),
      role.description ? truncate(role.description, 60) : '-',
    ]),
    options.color,
  );
}

export function roleDetails(role: Role, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Name', role.name],
      ['Built-in', yesNo(role.builtIn)],
      ['Description', orDash(role.description)],
      ['Permissions', list(role.permissions)],
    ],
    options.color,
  );
}

function tokenState(token: ApiToken, now: number): string {
  if (token.revoked) return 'revoked';
  const expires = Date.parse(token.expiresAt);
  return !Number.isNaN(expires) && expires <= now ? 'expired' : 'active';
}

export const TOKEN_COLUMNS = [
  'ID',
  'NAME',
  'TENANT',
  'STATE',
  'EXPIRES',
  'LAST USED',
  'PERMISSIONS',
] as const;

export function tokenTable(tokens: readonly ApiToken[], options: ViewOptions): string {
  return formatTable(
    TOKEN_COLUMNS,
    tokens.map((token) => [
      shortId(token.id),
      token.name,
      token.tenant.name,
      state(tokenState(token, options.now)),
      formatUntil(token.expiresAt, options.now),
      token.lastUsedAt ? `${formatAge(token.lastUsedAt, options.now)} ago` : 'never',
      truncate(list(token.permissions), 60),
    ]),
    options.color,
  );
}

// ---- audit

export const AUDIT_COLUMNS = [
  'SEQ',
  'TIME',
  'ACTOR',
  'ACTION',
  'TARGET',
  'OUTCOME',
  'STATUS',
  'SOURCE',
] as const;

export function auditTable(
  records: readonly AuditRecordView[],
  options: ViewOptions & { tenants?: boolean },
): string {
  const headers = options.tenants ? [...AUDIT_COLUMNS, 'TENANT'] : [...AUDIT_COLUMNS];
  return formatTable(
    headers,
    records.map((record) => {
      const row: Cell[] = [
        String(record.seq),
        record.time,
        truncate(record.actor, 32),
        record.action,
        record.target ? truncate(record.target, 40) : '-',
        state(record.outcome),
        String(record.status),
        record.source,
      ];
      if (options.tenants) row.push(shortId(record.tenantId));
      return row;
    }),
    options.color,
  );
}

/** Where verification first failed, in words: `record 12: hash mismatch`. */
export function describeFirstBad(result: AuditVerification): string {
  const bad = result.firstBad;
  if (!bad) return 'unknown (the verifier reported no detail)';
  // The verifier's reasons usually name the item already ("record 3: ...").
  const where = `${bad.kind} ${bad.index}`;
  return bad.reason.startsWith(`${where}:`) ? bad.reason : `${where}: ${bad.reason}`;
}

export function verificationDetails(result: AuditVerification, options: ViewOptions): string {
  const pairs: [string, Cell][] = [
    ['Result', result.ok ? { text: 'OK', color: 'green' } : { text: 'FAILED', color: 'red' }],
    ['Records', String(result.records)],
    ['Checkpoints', String(result.checkpoints)],
    ['Head', orDash(result.head)],
  ];
  if (!result.ok) pairs.push(['First bad', { text: describeFirstBad(result), color: 'red' }]);
  return formatKeyValue(pairs, options.color);
}
