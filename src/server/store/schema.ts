/** Table types of the control-plane database (camelCase here, snake_case in SQL via CamelCasePlugin). */
export interface FlavorsTable {
  id: string;
  name: string;
  vcpus: number;
  memoryMib: number;
  diskGib: number;
  createdAt: string;
}

export interface ImagesTable {
  id: string;
  name: string;
  format: 'kernel-initrd';
  sha256: string;
  sizeBytes: number;
  kernelPath: string;
  initrdPath: string;
  description: string;
  createdAt: string;
}

export interface HostsTable {
  id: string;
  hostname: string;
  state: 'online' | 'offline';
  accelerator: 'kvm' | 'tcg';
  acceleratorReason: string;
  qemuVersion: string;
  agentVersion: string;
  cpus: number;
  memoryMib: number;
  vcpusAllocatable: number;
  memoryMibAllocatable: number;
  lastSeenAt: string;
  createdAt: string;
}

export interface VmsTable {
  id: string;
  name: string;
  imageId: string;
  flavorId: string;
  vcpus: number;
  memoryMib: number;
  diskGib: number;
  state: string;
  /** Desired power: running | paused | stopped. */
  power: string;
  bootId: number;
  rebootId: number;
  stopTimeoutMs: number;
  restartPolicy: string;
  restartCount: number;
  hostId: string | null;
  accelerator: string | null;
  pid: number | null;
  guestIps: string;
  lastHeartbeatAt: string | null;
  guestUptimeSeconds: number | null;
  bootMs: number | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ApiTokensTable {
  id: string;
  name: string;
  tokenSha256: string;
  createdAt: string;
}

export interface Database {
  flavors: FlavorsTable;
  images: ImagesTable;
  hosts: HostsTable;
  vms: VmsTable;
  apiTokens: ApiTokensTable;
}
