/** Table types of the control-plane database (camelCase here, snake_case in SQL via CamelCasePlugin). */
export interface FlavorsTable {
  id: string;
  name: string;
  vcpus: number;
  memoryMib: number;
  diskGib: number;
  cpuLimitPercent: number | null;
  /** Network rate limit per direction in Mbit/s; null: unshaped. */
  networkMbps: number | null;
  cpuWeight: number;
  pidsMax: number;
  /** 'dedicated': the VM gets whole physical cores of its own (pinned); 'shared': the shared pool. */
  cpuPolicy?: 'shared' | 'dedicated';
  /** I/O operations and MiB per second for each of the VM's disks; null: unlimited. */
  diskIops?: number | null;
  diskMibps?: number | null;
  createdAt: string;
}

export interface ImagesTable {
  id: string;
  name: string;
  format: 'kernel-initrd' | 'raw' | 'qcow2';
  sha256: string;
  sizeBytes: number;
  kernelPath: string;
  initrdPath: string;
  kernelSha256: string;
  initrdSha256: string;
  description: string;
  createdAt: string;
  /** The owning tenant; null = published by the platform. */
  tenantId: string | null;
  visibility: ImageVisibility;
  status: ImageStatus;
  /** Why the image is quarantined or in error ('' otherwise). */
  statusReason: string;
  /** The disk file's SHA-256 (raw/qcow2 images); null for kernel+initrd bundles. */
  diskSha256: string | null;
  scanVerdict: 'clean' | 'infected' | 'error' | null;
  /** JSON array of the signature names the scanner matched. */
  scanSignatures: string;
  scanEngine: string | null;
  /** Fingerprint of the scanner databases used (a change triggers a re-scan). */
  scanDatabase: string | null;
  scannedAt: string | null;
  /** DSSE envelope signed with the platform key, for images the platform produced or imported. */
  platformSignature: string | null;
  /** A disk image's guest-visible size (qemu-img info); null for bundles and older imports. */
  virtualSizeBytes?: number | null;
}

export type ImageStatus = 'queued' | 'importing' | 'active' | 'quarantined' | 'error';

/** An encrypted, compressed blob in the image store, per key domain (tenant id or 'platform'). */
export interface ImageBlobsTable {
  keyDomain: string;
  sha256: string;
  sizeBytes: number;
  storedBytes: number;
  keyId: string;
  createdAt: string;
}

export type SecuritySeverity = 'info' | 'low' | 'medium' | 'high' | 'critical';

export interface SecurityEventsTable {
  id: string;
  seq: number;
  occurredAt: string;
  kind: string;
  severity: SecuritySeverity;
  tenantId: string | null;
  subjectType: string;
  subjectId: string | null;
  summary: string;
  /** JSON object with kind-specific fields. */
  detail: string;
}

export interface SecurityAlertsTable {
  id: string;
  /** The tenant the alert concerns (from its events); null: platform-wide. */
  tenantId: string | null;
  ruleId: string;
  severity: SecuritySeverity;
  status: 'open' | 'acknowledged' | 'resolved';
  /** The rule's grouping of the events (e.g. a source address): one open alert per rule and group. */
  groupKey: string;
  summary: string;
  subjectType: string;
  subjectId: string | null;
  /** JSON array of the seqs of the events behind it (bounded). */
  eventSeqs: string;
  count: number;
  firstAt: string;
  lastAt: string;
  /** JSON: { action, target, outcome, at } of the automatic response. */
  response: string;
  assignee: string | null;
  /** JSON array of { at, author, text }. */
  notes: string;
  createdAt: string;
  updatedAt: string;
}

export type ImageVisibility = 'private' | 'shared' | 'public';

/** A tenant an image with visibility 'shared' is shared with. */
export interface ImageSharesTable {
  imageId: string;
  tenantId: string;
}

/** A public key a tenant trusts to sign images (Ed25519, SPKI PEM; keyid = hex SHA-256 of the DER). */
export interface TrustedKeysTable {
  id: string;
  tenantId: string;
  name: string;
  keyid: string;
  publicKeyPem: string;
  createdAt: string;
}

/** A signature (DSSE envelope JSON) a tenant attached to an image; it counts for that tenant only. */
export interface ImageSignaturesTable {
  id: string;
  imageId: string;
  tenantId: string;
  keyid: string;
  envelope: string;
  createdAt: string;
}

/** A tenant's image trust policy (absent: both on). */
export interface TrustPoliciesTable {
  tenantId: string;
  requireSignatures: number;
  acceptPlatformImages: number;
  updatedAt: string;
}

export interface HostsTable {
  id: string;
  hostname: string;
  state: 'online' | 'offline' | 'suspected' | 'failed';
  accelerator: 'kvm' | 'tcg';
  acceleratorReason: string;
  qemuVersion: string;
  agentVersion: string;
  cpus: number;
  memoryMib: number;
  vcpusAllocatable: number;
  memoryMibAllocatable: number;
  /** 1: no new VMs are placed here (running ones stay). */
  maintenance: number;
  /** JSON: the cores that may be pinned, each the logical CPU ids of one physical core. */
  dedicatedCores?: string;
  /** The host's VXLAN underlay address (RAMPART_TUNNEL_IP), or null: its networks stay on it. */
  tunnelIp?: string | null;
  /** The server replica the host's agent is linked to now (server_replicas.id), or null. */
  linkedReplica?: string | null;
  lastSeenAt: string;
  createdAt: string;
}

/** A running server replica (one row each, renewed while it runs; stale rows are ignored). */
export interface ServerReplicasTable {
  id: string;
  /** Where remote agents dial it (host:port), or null without an agent listener. */
  agentEndpoint: string | null;
  startedAt: string;
  lastSeenAt: string;
}

/** An agent request forwarded to the replica the host is linked to (agent-forwarding.ts). */
export interface AgentForwardsTable {
  id: string;
  originReplica: string;
  targetReplica: string;
  hostId: string;
  /** The origin's counter: a host's requests reach its agent in this order. */
  seq: number;
  type: string;
  /** JSON: the request body. */
  body: string;
  timeoutMs: number;
  state: 'pending' | 'running' | 'done';
  /** JSON: {ok: true, result} or {ok: false, error: {code, message, details}}. */
  result: string | null;
  createdAt: string;
}

/** A one-time join token for a remote host (only its SHA-256 is stored). */
export interface HostJoinTokensTable {
  id: string;
  tokenHash: string;
  /** The host name the token is for (the CSR's CN must match), or null: any. */
  hostname: string | null;
  createdBy: string | null;
  createdAt: string;
  expiresAt: string;
  /** When the token was consumed (once), and the host id it was consumed for. */
  usedAt: string | null;
  hostId: string | null;
}

/** A host certificate issued by the server's host CA. */
export interface HostCertificatesTable {
  /** Uppercase hex, no leading zeros (as node:tls reports it). */
  serial: string;
  hostId: string;
  hostname: string;
  notBefore: string;
  notAfter: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface VmsTable {
  id: string;
  tenantId: string;
  name: string;
  imageId: string;
  flavorId: string;
  /** Affinity or anti-affinity group (null: none). */
  placementGroupId?: string | null;
  /** JSON array of the host CPUs the VM has to itself (dedicated CPU policy); null: shared pool. */
  pinnedCpus?: string | null;
  /** Per-disk I/O limits from the flavor; null: unlimited. */
  diskIops?: number | null;
  diskMibps?: number | null;
  /** The volume it boots from (disk images); null: a kernel+initrd image, booted directly. */
  rootVolumeId?: string | null;
  /** JSON array of OpenSSH public keys for its NoCloud seed; null: none. */
  sshKeys?: string | null;
  /** Its VM generation id (vmgenid): new for a clone and after its root disk is restored. */
  generationId?: string | null;
  vcpus: number;
  memoryMib: number;
  diskGib: number;
  cpuLimitPercent: number | null;
  /** Network rate limit per direction in Mbit/s; null: unshaped. */
  networkMbps: number | null;
  cpuWeight: number;
  pidsMax: number;
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

export interface VolumesTable {
  id: string;
  tenantId: string;
  name: string;
  sizeGib: number;
  status: 'creating' | 'available' | 'attached' | 'deleting';
  hostId: string | null;
  vmId: string | null;
  attachedAt: string | null;
  /** base64(nonce | AES-256-GCM ciphertext | tag) of the volume key under the tenant's data key. */
  wrappedKey: string;
  keyVersion: number;
  /** Lineage of a clone (null for a volume created empty). */
  sourceSnapshotId?: string | null;
  sourceVolumeId?: string | null;
  sourceBackupId?: string | null;
  /** 'luks': raw LUKS file; 'qcow2': qcow2 with LUKS encryption (root disks). */
  format?: 'luks' | 'qcow2';
  /** The disk image it was made from (a bootable volume); null for a volume created empty. */
  imageId?: string | null;
  /** 1: its file is a copy-on-write overlay of that image (the image must stay on its host). */
  imageBacked?: number;
  /** 1: a VM's root disk made from its image with the VM (counted in the VM's diskGiB, erased with it). */
  vmRoot?: number;
  createdAt: string;
  updatedAt: string;
}

export interface VolumeBackupsTable {
  id: string;
  tenantId: string;
  name: string;
  volumeId: string;
  volumeName: string;
  sizeGib: number;
  status: 'creating' | 'available';
  bytes: number | null;
  sha256: string | null;
  /** The DSSE envelope (platform key) over the backup's manifest. */
  manifest: string | null;
  wrappedKey: string;
  keyVersion: number;
  createdBy: string;
  createdAt: string;
  /** What the backed-up volume was made from and its file format (a restore stays bootable). */
  imageId?: string | null;
  format?: 'luks' | 'qcow2';
}

export interface VolumeSnapshotsTable {
  id: string;
  tenantId: string;
  volumeId: string;
  name: string;
  sizeGib: number;
  hostId: string;
  status: 'available' | 'deleting';
  /** Who took it (the security engine watches for unusual actors). */
  createdBy: string;
  createdAt: string;
}

export interface TenantsTable {
  id: string;
  name: string;
  requireMfaForAdmins: number;
  /** 1: the tenant's guests may run hypervisors (VMX/SVM exposed); a platform admin's decision. */
  allowNestedVirtualization: number;
  /** 1: the tenant's VMs only go to hosts running no other tenant's VMs (and vice versa). */
  dedicatedHosts: number;
  /** 0: the tenant forbids clones (new volumes from snapshots). Default 1. */
  allowClones?: number;
  createdAt: string;
}

export interface UsersTable {
  id: string;
  username: string;
  passwordHash: string;
  mustChangePassword: number;
  disabled: number;
  /** Base32 TOTP secret once enrolment is verified; null when MFA is off. */
  totpSecret: string | null;
  totpPendingSecret: string | null;
  /** The last accepted TOTP time step (replay protection). */
  totpLastStep: number;
  passwordChangedAt: string;
  createdAt: string;
}

export interface RecoveryCodesTable {
  id: string;
  userId: string;
  codeSha256: string;
  usedAt: string | null;
}

export interface RolesTable {
  id: string;
  tenantId: string;
  name: string;
  description: string;
  /** JSON array of permission strings. */
  permissions: string;
  createdAt: string;
}

export interface RoleBindingsTable {
  id: string;
  userId: string;
  /** A tenant id, or '' for the platform scope. */
  scope: string;
  role: string;
  createdAt: string;
}

export interface SessionsTable {
  id: string;
  userId: string;
  refreshSha256: string;
  previousRefreshSha256: string | null;
  restriction: string | null;
  mfa: number;
  source: string;
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string;
  revokedAt: string | null;
}

export interface ApiTokensTable {
  id: string;
  userId: string;
  tenantId: string;
  name: string;
  tokenSha256: string;
  /** JSON array of permission strings (a subset of the holder's at creation). */
  permissions: string;
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuditRecordsTable {
  seq: number;
  time: string;
  actorId: string | null;
  actor: string;
  tenantId: string | null;
  action: string;
  target: string | null;
  outcome: string;
  status: number;
  source: string;
  requestId: string;
  detail: string | null;
  prevHash: string;
  hash: string;
}

export interface AuditCheckpointsTable {
  id: number;
  recordCount: number;
  headHash: string;
  time: string;
  signature: string;
}

/** Per-tenant quota overrides (absent: the platform defaults apply). */
export interface QuotasTable {
  tenantId: string;
  /** JSON object: resource -> limit (-1 = unlimited), only the overridden ones. */
  limits: string;
  /** Bumped by every admission in the tenant: the write that serialises admissions (a row lock). */
  version: number;
  updatedAt: string;
}

export interface Database {
  flavors: FlavorsTable;
  images: ImagesTable;
  hosts: HostsTable;
  hostJoinTokens: HostJoinTokensTable;
  serverReplicas: ServerReplicasTable;
  agentForwards: AgentForwardsTable;
  hostCertificates: HostCertificatesTable;
  vms: VmsTable;
  apiTokens: ApiTokensTable;
  tenants: TenantsTable;
  users: UsersTable;
  recoveryCodes: RecoveryCodesTable;
  roles: RolesTable;
  roleBindings: RoleBindingsTable;
  sessions: SessionsTable;
  auditRecords: AuditRecordsTable;
  auditCheckpoints: AuditCheckpointsTable;
  quotas: QuotasTable;
  tenantKeys: TenantKeysTable;
  imageShares: ImageSharesTable;
  trustedKeys: TrustedKeysTable;
  trustPolicies: TrustPoliciesTable;
  imageSignatures: ImageSignaturesTable;
  imageBlobs: ImageBlobsTable;
  securityEvents: SecurityEventsTable;
  securityAlerts: SecurityAlertsTable;
  networks: NetworksTable;
  placementGroups: PlacementGroupsTable;
  volumes: VolumesTable;
  volumeSnapshots: VolumeSnapshotsTable;
  volumeBackups: VolumeBackupsTable;
  securityGroups: SecurityGroupsTable;
  securityGroupRules: SecurityGroupRulesTable;
  ports: PortsTable;
  portSecurityGroups: PortSecurityGroupsTable;
  complianceRuns: ComplianceRunsTable;
  detectionProgress: DetectionProgressTable;
  sharedSecrets: SharedSecretsTable;
}

/** A fingerprint of a secret every server on the database shares (migration 0030). */
export interface SharedSecretsTable {
  name: string;
  fingerprint: string;
  recordedAt: string;
}

/** How far the detection engine processed the security event stream (migration 0029). */
export interface DetectionProgressTable {
  /** The engine's name ('engine'). */
  name: string;
  /** The seq of the last event it processed. */
  seq: number;
  updatedAt: string;
}

/** One run of the compliance benchmark (migration 0025). */
export interface ComplianceRunsTable {
  id: string;
  startedAt: string;
  finishedAt: string;
  /** Percentage of passing checks (0-100). */
  score: number;
  passed: number;
  failed: number;
  /** JSON array of the check results (api/compliance.ts ComplianceCheckResult). */
  results: string;
  trigger: 'schedule' | 'manual';
}

export interface PlacementGroupsTable {
  id: string;
  tenantId: string;
  name: string;
  policy: 'affinity' | 'anti-affinity';
  createdAt: string;
}

export interface NetworksTable {
  id: string;
  tenantId: string;
  name: string;
  /** IPv4 subnet in CIDR notation, normalized (host bits zero). */
  cidr: string;
  /** The network's conntrack zone and number on every host (unique). */
  zone: number;
  /** 1: VMs reach outside through NAT on the host (never the host's management plane). */
  outbound: number;
  description: string;
  createdAt: string;
}

export interface SecurityGroupsTable {
  id: string;
  tenantId: string;
  name: string;
  description: string;
  createdAt: string;
}

export interface SecurityGroupRulesTable {
  id: string;
  groupId: string;
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp' | 'icmp' | 'any';
  portMin: number | null;
  portMax: number | null;
  remoteCidr: string | null;
  remoteGroupId: string | null;
  description: string;
  createdAt: string;
}

export interface PortsTable {
  id: string;
  tenantId: string;
  networkId: string;
  vmId: string;
  /** The port's number in marks and maps (unique). */
  tag: number;
  mac: string;
  ipv4: string;
  /** JSON array of extra CIDRs an admin allowed as source addresses. */
  allowedAddresses: string;
  /** 1: isolated by a person or a detection rule (every frame from and to it dropped). */
  quarantined?: number;
  createdAt: string;
}

export interface PortSecurityGroupsTable {
  portId: string;
  groupId: string;
}

/** Per-tenant data keys, only ever stored wrapped (AES-256-GCM) by the master key named by masterKeyId. */
export interface TenantKeysTable {
  tenantId: string;
  version: number;
  /** base64(nonce 12 | ciphertext 32 | tag 16). */
  wrapped: string;
  /** Short hash of the master key that wrapped this row. */
  masterKeyId: string;
  createdAt: string;
}
