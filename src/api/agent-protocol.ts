/**
 * The server <-> agent protocol, version 1. JSON lines over a stream (a unix socket in all-in-one mode;
 * the same messages cross mutual TLS for remote hosts, with a heartbeat from the agent). The server sends desired state (`sync`, `apply`,
 * `remove`); the agent reconciles and reports actual state (`vm.status`), console output and events.
 * Requests carry an `id`; the agent answers each with exactly one `reply` of the same id.
 *
 * Desired power is declarative and idempotent: `bootId` and `rebootId` are counters. The agent starts
 * QEMU when the desired power is running/paused and no QEMU runs for the current `bootId`; a QEMU that
 * dies is reported as `crashed` and is not restarted by the agent: the server's restart policy decides
 * and bumps `bootId`. A higher `rebootId` than the last one performed resets the guest.
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { DSSE_MAX_ENVELOPE_BYTES } from '../common/dsse.js';
import { UUID_PATTERN } from '../common/ids.js';
import { NAME_PATTERN, SSH_PUBLIC_KEY_PATTERN } from './common.js';
import { Accelerator, HostCapacity } from './host.js';
import { HostFirewall, IPV4_PATTERN, PortCounters, PortIntent } from './host-network.js';
import type { VmHardening } from './hardening.js';
import { MAX_PUBLIC_KEY_PEM_BYTES } from './trust.js';

export const AGENT_PROTOCOL_VERSION = 1;
/** A message line longer than this is a protocol error (console chunks are split below it). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const Uuid = Type.String({ pattern: UUID_PATTERN });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

export const DesiredPower = Type.Union([
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('stopped'),
]);
export type DesiredPower = Static<typeof DesiredPower>;

export const VmLimits = Type.Object(
  {
    /** CPU time for the whole VM in percent of one host CPU (100 = one full CPU). */
    cpuPercent: Type.Integer({ minimum: 1, maximum: 6_400 }),
    /** Relative share under contention, cgroup v2 cpu.weight scale (1..10000, default 100). */
    cpuWeight: Type.Integer({ minimum: 1, maximum: 10_000 }),
    pidsMax: Type.Integer({ minimum: 16, maximum: 65_536 }),
    /** Rate limit of each port per direction in Mbit/s (tbf on the tap, ifb for the guest's side). */
    networkMbps: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    /** Limits of each disk (a QEMU throttle group per disk): operations and bytes per second. */
    diskIops: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    diskBytesPerSecond: Type.Optional(Type.Integer({ minimum: 4096, maximum: 100 * 1024 ** 3 })),
  },
  { additionalProperties: false },
);
export type VmLimits = Static<typeof VmLimits>;

/** At most this many of the tenant's attestations (signature envelopes) for one image in an intent. */
export const MAX_INTENT_ATTESTATIONS = 16;
/** At most this many trusted (or platform) keys in an intent. */
export const MAX_INTENT_TRUST_KEYS = 32;

/** A DSSE envelope as JSON text (checked and bounded again in bytes by common/dsse.ts). */
const EnvelopeText = Type.String({ minLength: 1, maxLength: DSSE_MAX_ENVELOPE_BYTES });

export const ImageTrustKey = Type.Object(
  {
    /** Lowercase hex SHA-256 of the key's SPKI DER (the DSSE keyid). */
    keyid: Sha256,
    /** Ed25519 public key, SPKI PEM. */
    publicKeyPem: Type.String({ minLength: 1, maxLength: MAX_PUBLIC_KEY_PEM_BYTES }),
  },
  { additionalProperties: false },
);
export type ImageTrustKey = Static<typeof ImageTrustKey>;

/**
 * Everything the agent needs to take the image trust decision again by itself before every boot
 * (common/trust-policy.ts evaluateImageTrust), as the server took it: the tenant's policy and keys, the
 * tenant's attestations for the image, and the platform's keys and signature.
 */
export const ImageTrustMaterial = Type.Object(
  {
    rules: Type.Object(
      { requireSignatures: Type.Boolean(), acceptPlatformImages: Type.Boolean() },
      { additionalProperties: false },
    ),
    /** The tenant's trusted image-signing keys. */
    trustedKeys: Type.Array(ImageTrustKey, { maxItems: MAX_INTENT_TRUST_KEYS }),
    /** The tenant's signature envelopes for the image. */
    attestations: Type.Array(EnvelopeText, { maxItems: MAX_INTENT_ATTESTATIONS }),
    /** The platform's image-signing keys. */
    platformKeys: Type.Array(ImageTrustKey, { maxItems: MAX_INTENT_TRUST_KEYS }),
    /** The platform's signature envelope for the image (platform images), or null. */
    platformSignature: Type.Union([EnvelopeText, Type.Null()]),
    /** The image is published by the platform (it has no owning tenant). */
    platformImage: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type ImageTrustMaterial = Static<typeof ImageTrustMaterial>;

/** A plaintext disk image on the host (the image cache): read-only base of root-disk overlays. */
export const BackingImage = Type.Object(
  {
    path: Type.String({ pattern: '^/[A-Za-z0-9._/-]+$', maxLength: 4096 }),
    format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
    /** The file's digest: the agent re-checks it before every start (the cache is never trusted). */
    sha256: Sha256,
  },
  { additionalProperties: false },
);
export type BackingImage = Static<typeof BackingImage>;

/**
 * A volume attached to the VM: a LUKS-encrypted file on the VM's host, created on first use. `key` is the
 * volume's LUKS passphrase, unwrapped by the server for this intent only: the agent keeps it in memory,
 * hands it to QEMU through a file only the VM's uid can read (removed once QEMU has read it), and never
 * persists or logs it.
 */
export const VolumeIntent = Type.Object(
  {
    id: Uuid,
    sizeGiB: Type.Integer({ minimum: 1, maximum: 65_536 }),
    key: Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }),
    /**
     * The file format: raw QEMU LUKS (absent, `luks`), or qcow2 with QEMU's LUKS encryption (`qcow2`:
     * root disks, copy-on-write overlays of their image).
     */
    format: Type.Optional(Type.Union([Type.Literal('luks'), Type.Literal('qcow2')])),
    /** qcow2 only: the read-only image the overlay is based on (the VM's verified disk image). */
    backing: Type.Optional(BackingImage),
    /** The disk the VM boots from (first in the boot order). */
    boot: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type VolumeIntent = Static<typeof VolumeIntent>;

const HostPath = Type.String({ pattern: '^/[A-Za-z0-9._/-]+$', maxLength: 4096 });

/** A kernel+initrd bundle, booted directly (-kernel/-initrd). */
export const KernelInitrdImageIntent = Type.Object({
  format: Type.Literal('kernel-initrd'),
  sha256: Sha256,
  /** Absolute paths on the host, readable by the VM's uid (all-in-one: the server's image store). */
  kernelPath: HostPath,
  initrdPath: HostPath,
  /** The files' own digests: the agent re-checks them before every boot (the cache is never trusted). */
  kernelSha256: Sha256,
  initrdSha256: Sha256,
  /** The trust material the agent re-checks before every boot (fails closed without it). */
  trust: ImageTrustMaterial,
});

/**
 * A disk image (raw or qcow2) booted by the firmware (SeaBIOS) from the VM's root volume, a
 * copy-on-write overlay of it. `sha256` is the disk file's digest: re-checked before every boot.
 */
export const DiskImageIntent = Type.Object({
  format: Type.Union([Type.Literal('raw'), Type.Literal('qcow2')]),
  sha256: Sha256,
  diskPath: HostPath,
  trust: ImageTrustMaterial,
});

/**
 * A NoCloud seed (cloud-init's config drive) the agent writes for the VM: meta-data (instance-id,
 * local-hostname), user-data (#cloud-config: hostname, ssh_authorized_keys) and network-config
 * (version 2, from the VM's ports). A new instance-id tells the guest it is a new machine.
 */
export const SeedIntent = Type.Object(
  {
    instanceId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' }),
    hostname: Type.String({ pattern: NAME_PATTERN }),
    sshKeys: Type.Array(Type.String({ pattern: SSH_PUBLIC_KEY_PATTERN, maxLength: 16_384 }), {
      maxItems: 16,
    }),
  },
  { additionalProperties: false },
);
export type SeedIntent = Static<typeof SeedIntent>;

export const VmIntent = Type.Object(
  {
    id: Uuid,
    name: Type.String({ pattern: NAME_PATTERN }),
    vcpus: Type.Integer({ minimum: 1, maximum: 64 }),
    memoryMiB: Type.Integer({ minimum: 64, maximum: 262_144 }),
    image: Type.Union([KernelInitrdImageIntent, DiskImageIntent]),
    /** The VM's tenant, and whether that tenant has dedicated hosts (the agent refuses to mix). */
    tenant: Type.Optional(
      Type.Object({ id: Uuid, dedicatedHosts: Type.Boolean() }, { additionalProperties: false }),
    ),
    /** VMX/SVM exposed to the guest (the tenant is allowed nested virtualization by a platform admin). */
    nestedVirtualization: Type.Optional(Type.Boolean()),
    /**
     * Dedicated CPU policy: the host CPUs this VM has to itself (whole cores, chosen by the server from
     * the host's dedicated cores). Absent: the VM runs on the host's shared pool.
     */
    pinnedCpus: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0, maximum: 4095 }), { minItems: 1, maxItems: 256 }),
    ),
    /** The VM's network interfaces (taps on the networks' bridges); none: no network device. */
    ports: Type.Array(PortIntent, { maxItems: 8 }),
    /**
     * Attached volumes in attachment order (virtio-blk: /dev/vda, /dev/vdb, ... in the guest); a root
     * volume (`boot`) comes first.
     */
    volumes: Type.Optional(Type.Array(VolumeIntent, { maxItems: 17 })),
    /** The NoCloud seed, attached as a read-only disk after the volumes (disk-image VMs). */
    seed: Type.Optional(SeedIntent),
    /** The VM generation id (QEMU's vmgenid device): new for a clone and after a disk restore. */
    generationId: Type.Optional(Uuid),
    power: DesiredPower,
    bootId: Type.Integer({ minimum: 0 }),
    rebootId: Type.Integer({ minimum: 0 }),
    /** Graceful (ACPI) stop timeout before QEMU is stopped by force; 0 = force at once. */
    stopTimeoutMs: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    /**
     * Runtime limits from the flavor, applied by the agent through cgroups. The memory limit is the
     * guest RAM (memoryMiB) plus the agent's own estimate of QEMU's overhead for its accelerator.
     */
    limits: VmLimits,
  },
  { additionalProperties: false },
);
export type VmIntent = Static<typeof VmIntent>;

export const VmPhase = Type.Union([
  Type.Literal('stopped'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('stopping'),
  Type.Literal('crashed'),
]);
export type VmPhase = Static<typeof VmPhase>;

/** The cgroup limits the agent applied to a VM's running QEMU: what the host actually enforces. */
export const VmResources = Type.Object({
  cgroup: Type.Union([Type.Literal('v1'), Type.Literal('v2')]),
  cpuPercent: Type.Integer(),
  cpuWeight: Type.Integer(),
  pidsMax: Type.Integer(),
  /** Guest RAM + the agent's estimate of QEMU's own overhead for the VM's accelerator. */
  memoryLimitMiB: Type.Integer(),
  /**
   * False if the agent found this QEMU outside its cgroups (e.g. re-adopted after an upgrade) and had
   * to move it in: memory it allocated before the move is not charged to the VM.
   */
  confined: Type.Boolean(),
});
export type VmResources = Static<typeof VmResources>;

export const VmStatus = Type.Object({
  id: Uuid,
  phase: VmPhase,
  /** The bootId of the QEMU instance this status describes (or of the last one). */
  bootId: Type.Integer({ minimum: 0 }),
  /** The highest rebootId the agent has performed for this VM. */
  rebootId: Type.Integer({ minimum: 0 }),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  uid: Type.Union([Type.Integer(), Type.Null()]),
  accelerator: Type.Union([Accelerator, Type.Null()]),
  guestIps: Type.Array(Type.String()),
  lastHeartbeatAt: Type.Union([Type.String(), Type.Null()]),
  guestUptimeSeconds: Type.Union([Type.Number(), Type.Null()]),
  /** Milliseconds from QEMU spawn to the first guest-agent heartbeat of this boot. */
  bootMs: Type.Union([Type.Integer(), Type.Null()]),
  /** Why the VM is crashed or failed to start; null otherwise. */
  error: Type.Union([Type.String(), Type.Null()]),
  /** The runtime limits in force while QEMU runs; null when none are (stopped, or cgroups off). */
  resources: Type.Optional(Type.Union([VmResources, Type.Null()])),
  /** The start failed in a way a retry cannot fix (the image did not verify): no restart policy applies. */
  fatal: Type.Optional(Type.Boolean()),
});
export type VmStatus = Static<typeof VmStatus>;

export const HostInfo = Type.Object({
  hostId: Uuid,
  hostname: Type.String(),
  agentVersion: Type.String(),
  qemuVersion: Type.String(),
  accelerator: Accelerator,
  acceleratorReason: Type.String(),
  capacity: HostCapacity,
  /** Cores that may be given to dedicated-CPU VMs, each the logical CPU ids of one physical core. */
  dedicatedCores: Type.Optional(
    Type.Array(Type.Array(Type.Integer({ minimum: 0, maximum: 4095 }), { minItems: 1, maxItems: 8 }), {
      maxItems: 4096,
    }),
  ),
  /** RAMPART_TUNNEL_IP: this host's underlay address for the VXLAN tunnels of networks spanning hosts. */
  tunnelIp: Type.Optional(Type.String({ pattern: IPV4_PATTERN })),
});
export type HostInfo = Static<typeof HostInfo>;

// ---- server -> agent requests

export const SyncRequest = Type.Object({
  type: Type.Literal('sync'),
  id: Type.Integer(),
  vms: Type.Array(VmIntent),
});
/**
 * The server renews a remote agent's host lease (every second or two while the link is up). Each
 * renewal echoes the agent's own clock from its answer to the previous one (`echoMs`): the lease runs
 * from that instant, which certainly came before the server's record of the renewal, whatever the
 * delays on the way. An agent whose lease (minus a margin) runs out kills its VMs (self-fencing); the
 * server restarts them elsewhere only after the lease plus a margin. Agents of older versions answer
 * with an error (and do not fence).
 */
export const LeaseRequest = Type.Object({
  type: Type.Literal('lease'),
  id: Type.Integer(),
  leaseSeconds: Type.Integer({ minimum: 10, maximum: 3600 }),
  echoMs: Type.Optional(Type.Integer({ minimum: 0 })),
});
export const ApplyRequest = Type.Object({ type: Type.Literal('apply'), id: Type.Integer(), vm: VmIntent });
export const RemoveRequest = Type.Object({ type: Type.Literal('remove'), id: Type.Integer(), vmId: Uuid });
export const ConsoleTailRequest = Type.Object({
  type: Type.Literal('console.tail'),
  id: Type.Integer(),
  vmId: Uuid,
  bytes: Type.Integer({ minimum: 1, maximum: 16 * 1024 * 1024 }),
});
export const ConsoleWriteRequest = Type.Object({
  type: Type.Literal('console.write'),
  id: Type.Integer(),
  vmId: Uuid,
  dataBase64: Type.String({ maxLength: 65_536 }),
});

/** The host's whole firewall (replaces the previous one in one transaction). */
export const FirewallRequest = Type.Object({
  type: Type.Literal('firewall'),
  id: Type.Integer(),
  firewall: HostFirewall,
});
export const NetCountersRequest = Type.Object({ type: Type.Literal('net.counters'), id: Type.Integer() });
export const HardeningRequest = Type.Object({
  type: Type.Literal('vm.hardening'),
  id: Type.Integer(),
  vmId: Uuid,
});

/** Securely erases a volume's file on this host (overwritten with zeros, then removed). */
export const VolumeEraseRequest = Type.Object({
  type: Type.Literal('volume.erase'),
  id: Type.Integer(),
  volumeId: Uuid,
});

const Passphrase = Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' });

/** Copies a volume's (encrypted) file to a snapshot file on the same host; its VM is stopped. */
export const VolumeSnapshotRequest = Type.Object({
  type: Type.Literal('volume.snapshot'),
  id: Type.Integer(),
  volumeId: Uuid,
  snapshotId: Uuid,
});
/** Puts a snapshot's content back into its volume (same key, same size); its VM is stopped. */
export const VolumeRestoreRequest = Type.Object({
  type: Type.Literal('volume.restore'),
  id: Type.Integer(),
  volumeId: Uuid,
  snapshotId: Uuid,
});
/**
 * A new volume from a snapshot, re-encrypted under the new volume's own key (decrypted with the
 * snapshot's volume key, written with the new one): a clone never shares key material with its origin.
 */
export const VolumeCloneRequest = Type.Object({
  type: Type.Literal('volume.clone'),
  id: Type.Integer(),
  snapshotId: Uuid,
  sourceKey: Passphrase,
  volume: VolumeIntent,
});
const ServerPath = Type.String({ pattern: '^/[A-Za-z0-9._/-]+$', maxLength: 4096 });

/**
 * Copies a volume's encrypted file to a new file the server names (a backup). Agents reach the server's
 * storage by path today (one machine or a shared filesystem), as they do the image cache.
 */
export const VolumeExportRequest = Type.Object({
  type: Type.Literal('volume.export'),
  id: Type.Integer(),
  volumeId: Uuid,
  path: ServerPath,
  /**
   * qcow2 volumes: the volume's key and its base image. The backup is flattened into a standalone
   * qcow2 under the same key (it restores on a host without the image). Raw LUKS files are copied.
   */
  key: Type.Optional(Passphrase),
  backing: Type.Optional(BackingImage),
});
/** A new volume from a verified backup at `path`, re-encrypted under the new volume's own key. */
export const VolumeImportRequest = Type.Object({
  type: Type.Literal('volume.import'),
  id: Type.Integer(),
  path: ServerPath,
  sourceKey: Passphrase,
  volume: VolumeIntent,
});
/** Securely erases a snapshot's file (zeros, then removed). */
export const SnapshotEraseRequest = Type.Object({
  type: Type.Literal('snapshot.erase'),
  id: Type.Integer(),
  snapshotId: Uuid,
});

/**
 * Certificate renewal, driven by the server over the authenticated link: the agent makes a fresh P-256
 * key (kept aside until the install) and answers a CSR with CN = `subject` (the host name it joined
 * with). The key never leaves the host.
 */
export const CertificateRequestRequest = Type.Object({
  type: Type.Literal('certificate.request'),
  id: Type.Integer(),
  subject: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$' }),
});
/**
 * The new host certificate for the key of the last certificate.request. The agent checks it (signed by
 * the CA it pinned at join, for its host id, for that key) before it replaces its credentials, then
 * dials again with them.
 */
export const CertificateInstallRequest = Type.Object({
  type: Type.Literal('certificate.install'),
  id: Type.Integer(),
  certificate: Type.String({ minLength: 1, maxLength: 8192 }),
});

export const AgentRequest = Type.Union([
  SyncRequest,
  LeaseRequest,
  ApplyRequest,
  RemoveRequest,
  ConsoleTailRequest,
  ConsoleWriteRequest,
  FirewallRequest,
  NetCountersRequest,
  HardeningRequest,
  VolumeEraseRequest,
  VolumeSnapshotRequest,
  VolumeRestoreRequest,
  VolumeCloneRequest,
  SnapshotEraseRequest,
  VolumeExportRequest,
  VolumeImportRequest,
  CertificateRequestRequest,
  CertificateInstallRequest,
]);
export type AgentRequest = Static<typeof AgentRequest>;
export type AgentRequestType = AgentRequest['type'];

/** Results of each request type, carried in `reply.result`. */
export interface AgentResults {
  sync: { statuses: VmStatus[] };
  /** fenced: the VMs this agent killed at its last self-fencing, reported once (then cleared). */
  lease: { fenced: { at: string; vmIds: string[] } | null; nowMs: number };
  apply: { status: VmStatus };
  remove: { removed: boolean };
  'console.tail': { dataBase64: string; capBytes: number };
  'console.write': { written: number };
  firewall: { generation: number };
  'net.counters': { ports: PortCounters[] };
  'vm.hardening': VmHardening;
  /** existed: the file was there; bytes: how many were overwritten with zeros before it was removed. */
  'volume.erase': { existed: boolean; bytes: number };
  'volume.snapshot': { bytes: number };
  'volume.restore': { bytes: number };
  'volume.clone': { bytes: number };
  'snapshot.erase': { existed: boolean; bytes: number };
  'volume.export': { bytes: number };
  'volume.import': { bytes: number };
  'certificate.request': { csr: string };
  'certificate.install': { serial: string; notAfter: string };
}

// ---- agent -> server messages

export const HelloMessage = Type.Object({
  type: Type.Literal('hello'),
  protocolVersion: Type.Integer(),
  host: HostInfo,
});
export const StatusMessage = Type.Object({ type: Type.Literal('vm.status'), status: VmStatus });
export const ConsoleMessage = Type.Object({
  type: Type.Literal('vm.console'),
  vmId: Uuid,
  dataBase64: Type.String(),
});
export const AgentEventMessage = Type.Object({
  type: Type.Literal('event'),
  kind: Type.String(),
  vmId: Type.Union([Uuid, Type.Null()]),
  at: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
});
export const ReplyMessage = Type.Object({
  type: Type.Literal('reply'),
  id: Type.Integer(),
  ok: Type.Boolean(),
  result: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
});

/**
 * Sent by a remote agent (TLS) every few seconds: the server closes a connection that stays silent for
 * three intervals, and its host goes offline.
 */
export const HeartbeatMessage = Type.Object({
  type: Type.Literal('heartbeat'),
  at: Type.String({ maxLength: 64 }),
});

export const AgentMessage = Type.Union([
  HelloMessage,
  HeartbeatMessage,
  StatusMessage,
  ConsoleMessage,
  AgentEventMessage,
  ReplyMessage,
]);
export type AgentMessage = Static<typeof AgentMessage>;
export type AgentEventMessage = Static<typeof AgentEventMessage>;

export const agentRequestValidator = Compile(AgentRequest);
export const agentMessageValidator = Compile(AgentMessage);
