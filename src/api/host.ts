/** Hypervisor hosts as the API shows them: capacity, accelerator, connection state. */
import { Type, type Static } from 'typebox';
import { Id, Timestamp } from './common.js';

export const Accelerator = Type.Union([Type.Literal('kvm'), Type.Literal('tcg')]);
export type Accelerator = Static<typeof Accelerator>;

/**
 * online: its agent is connected. offline: a host without self-fencing (the local or an external
 * unix-socket agent) lost its agent. suspected: a remote (self-fencing) host's link is gone or silent.
 * failed: a suspected host whose lease has expired (its VMs with a restart policy run elsewhere now).
 */
export const HostState = Type.Union([
  Type.Literal('online'),
  Type.Literal('offline'),
  Type.Literal('suspected'),
  Type.Literal('failed'),
]);

export const HostCapacity = Type.Object({
  cpus: Type.Integer({ minimum: 0 }),
  memoryMiB: Type.Integer({ minimum: 0 }),
  vcpusAllocatable: Type.Integer({ minimum: 0 }),
  memoryMiBAllocatable: Type.Integer({ minimum: 0 }),
});
export type HostCapacity = Static<typeof HostCapacity>;

export const Host = Type.Object(
  {
    id: Id,
    hostname: Type.String(),
    state: HostState,
    accelerator: Accelerator,
    acceleratorReason: Type.String(),
    qemuVersion: Type.String(),
    capacity: HostCapacity,
    allocated: Type.Object({
      vcpus: Type.Integer(),
      memoryMiB: Type.Integer(),
      vms: Type.Integer(),
      /** Host CPUs held by dedicated-CPU VMs (never shared with another VM). */
      pinnedCpus: Type.Array(Type.Integer()),
    }),
    /** Cores dedicated-CPU VMs may get, each the logical CPUs (SMT siblings) of one physical core. */
    dedicatedCores: Type.Array(Type.Array(Type.Integer())),
    /** The platform's ratios behind capacity.*Allocatable: vCPUs per CPU, memory per MiB. */
    overcommit: Type.Object({ cpu: Type.Number(), memory: Type.Number() }),
    /** In maintenance: the scheduler places no new VM here; running VMs stay. */
    maintenance: Type.Boolean(),
    /** Its VXLAN underlay address (RAMPART_TUNNEL_IP), or null: its networks do not span hosts. */
    tunnelIp: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    agentVersion: Type.String(),
    lastSeenAt: Timestamp,
    createdAt: Timestamp,
  },
  { $id: 'Host' },
);
export type Host = Static<typeof Host>;

export const HostUpdate = Type.Object({ maintenance: Type.Boolean() }, { additionalProperties: false });
export type HostUpdate = Static<typeof HostUpdate>;

/** What `POST /v1/hosts/{id}/evacuate` did: stopped VMs moved elsewhere, the others and why. */
export const HostEvacuation = Type.Object(
  {
    hostId: Id,
    moved: Type.Array(
      Type.Object({ vmId: Id, name: Type.String(), toHostId: Id, toHostname: Type.String() }),
    ),
    skipped: Type.Array(Type.Object({ vmId: Id, name: Type.String(), reason: Type.String() })),
  },
  { $id: 'HostEvacuation' },
);
export type HostEvacuation = Static<typeof HostEvacuation>;

/** `POST /v1/platform/hosts/join-tokens`: a one-time token for one remote host to join. */
export const JoinTokenCreate = Type.Object(
  {
    /** The host's name: the agent's CSR must carry it as its CN (absent: any host name). */
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$' })),
    /** How long the token stays usable (default 3600 s, at most 7 days). */
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86_400 })),
  },
  { additionalProperties: false },
);
export type JoinTokenCreate = Static<typeof JoinTokenCreate>;

export const JoinTokenCreated = Type.Object(
  {
    id: Id,
    /** Shown once: the server keeps only its SHA-256. */
    token: Type.String(),
    hostname: Type.Union([Type.String(), Type.Null()]),
    expiresAt: Timestamp,
    /** `sha256:<hex>` of the host CA certificate, for `rampart agent join --ca-fingerprint`. */
    caFingerprint: Type.String(),
  },
  { $id: 'JoinTokenCreated' },
);
export type JoinTokenCreated = Static<typeof JoinTokenCreated>;

/** `POST /v1/hosts/join`: the token and a PEM CSR (EC P-256, subject CN=<host name>). */
export const HostJoinRequest = Type.Object(
  {
    token: Type.String({ pattern: '^rjt_[A-Za-z0-9_-]{43}$' }),
    csr: Type.String({ minLength: 64, maxLength: 8192 }),
  },
  { additionalProperties: false },
);
export type HostJoinRequest = Static<typeof HostJoinRequest>;

export const HostJoined = Type.Object(
  {
    hostId: Id,
    hostname: Type.String(),
    /** The host certificate (PEM; CN = hostId, clientAuth, signed by the host CA). */
    certificate: Type.String(),
    /** The host CA's certificate (PEM): the agent pins it to verify the server. */
    caCertificate: Type.String(),
    /** host:port of the server's agent listener (TLS 1.3, mutual authentication). */
    agentEndpoint: Type.String(),
    /**
     * Every live server replica's agent listener, this one first: the agent dials the next one when
     * its replica is lost.
     */
    agentEndpoints: Type.Array(Type.String(), { minItems: 1 }),
  },
  { $id: 'HostJoined' },
);
export type HostJoined = Static<typeof HostJoined>;

export const HostRevoked = Type.Object(
  { hostId: Id, hostname: Type.String(), revoked: Type.Integer({ minimum: 0 }) },
  { $id: 'HostRevoked' },
);
export type HostRevoked = Static<typeof HostRevoked>;

/** A remote host's certificate renewed over its link (the older ones are revoked once it is used). */
export const HostCertificateRenewed = Type.Object(
  {
    hostId: Id,
    hostname: Type.String(),
    /** The new certificate's serial (uppercase hex). */
    serial: Type.String(),
    notAfter: Type.String({ format: 'date-time' }),
  },
  { $id: 'HostCertificateRenewed' },
);
export type HostCertificateRenewed = Static<typeof HostCertificateRenewed>;
