/**
 * How each resource looks for people: the fixed column set of its table and the fields of its detail
 * view. JSON output bypasses all of this and prints the API body unchanged.
 */
import type { Flavor } from '../api/flavor.js';
import type { Host } from '../api/host.js';
import type { Image } from '../api/image.js';
import type { Vm } from '../api/vm.js';
import {
  formatAge,
  formatBytes,
  formatDuration,
  formatKeyValue,
  formatMiB,
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
      ['Flavor', vm.flavor ? `${vm.flavor.name} (${vm.flavor.id})` : '-'],
      ['vCPUs', orDash(vm.vcpus)],
      ['Memory', typeof vm.memoryMiB === 'number' ? formatMiB(vm.memoryMiB) : '-'],
      ['Disk', typeof vm.diskGiB === 'number' ? `${vm.diskGiB} GiB` : '-'],
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

export const IMAGE_COLUMNS = ['NAME', 'FORMAT', 'SIZE', 'SHA256', 'AGE', 'DESCRIPTION'] as const;

export function imageTable(images: readonly Image[], options: ViewOptions): string {
  return formatTable(
    IMAGE_COLUMNS,
    images.map((image) => [
      image.name,
      image.format,
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
      ['Description', orDash(image.description)],
      ['Created', timestamp(image.createdAt, options.now)],
    ],
    options.color,
  );
}

// ---- flavors

export const FLAVOR_COLUMNS = ['NAME', 'VCPUS', 'MEMORY', 'DISK', 'AGE'] as const;

export function flavorTable(flavors: readonly Flavor[], options: ViewOptions): string {
  return formatTable(
    FLAVOR_COLUMNS,
    flavors.map((flavor) => [
      flavor.name,
      String(flavor.vcpus),
      formatMiB(flavor.memoryMiB),
      `${flavor.diskGiB} GiB`,
      formatAge(flavor.createdAt, options.now),
    ]),
    options.color,
  );
}

export function flavorDetails(flavor: Flavor, options: ViewOptions): string {
  return formatKeyValue(
    [
      ['Name', flavor.name],
      ['ID', flavor.id],
      ['vCPUs', String(flavor.vcpus)],
      ['Memory', `${formatMiB(flavor.memoryMiB)} (${flavor.memoryMiB} MiB)`],
      ['Disk', `${flavor.diskGiB} GiB`],
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
      ? `${formatMiB(host.allocated.memoryMiB)}/${formatMiB(host.capacity.memoryMiBAllocatable)}`
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
      ['VMs', orDash(allocated?.vms)],
      ['Last seen', timestamp(host.lastSeenAt, options.now)],
      ['Created', timestamp(host.createdAt, options.now)],
    ],
    options.color,
  );
}
