/** Tenant networks, security groups and VM ports as the API shows them. */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';
import { CIDR4_PATTERN, IPV4_PATTERN, MAC_PATTERN } from './host-network.js';

const Ref = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });
const Cidr = Type.String({ pattern: CIDR4_PATTERN, maxLength: 18 });

export const NetworkCreate = Type.Object(
  {
    name: Name,
    /** An IPv4 subnet, /8 to /29 (e.g. 10.0.0.0/24); two tenants may use the same one. */
    cidr: Cidr,
    /** Outbound access through NAT on the host (default off). */
    outbound: Type.Optional(Type.Boolean()),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type NetworkCreate = Static<typeof NetworkCreate>;

export const NetworkUpdate = Type.Object(
  {
    outbound: Type.Optional(Type.Boolean()),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type NetworkUpdate = Static<typeof NetworkUpdate>;

export const Network = Type.Object(
  {
    id: Id,
    tenantId: Id,
    name: Name,
    cidr: Type.String(),
    /** The guests' gateway (the first address); it answers only while outbound is on. */
    gateway: Type.String(),
    /** VMs reach outside through NAT on the host (never the host's management plane). */
    outbound: Type.Boolean(),
    /** Addresses VMs can get (the network and broadcast addresses and the first address are reserved). */
    capacity: Type.Integer({ minimum: 0 }),
    /** Ports (VM interfaces) on the network. */
    ports: Type.Integer({ minimum: 0 }),
    description: Type.String(),
    createdAt: Timestamp,
  },
  { $id: 'Network' },
);
export type Network = Static<typeof Network>;

export const RuleDirection = Type.Union([Type.Literal('ingress'), Type.Literal('egress')]);
export const RuleProtocol = Type.Union([
  Type.Literal('tcp'),
  Type.Literal('udp'),
  Type.Literal('icmp'),
  Type.Literal('any'),
]);

export const SecurityGroupRuleCreate = Type.Object(
  {
    direction: RuleDirection,
    protocol: RuleProtocol,
    /** tcp/udp only; both or neither (neither: every port). */
    portMin: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_535 })),
    portMax: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_535 })),
    /** Where traffic may come from (ingress) or go to (egress): a CIDR, or the members of a group. */
    remoteCidr: Type.Optional(Cidr),
    remoteGroup: Type.Optional(Ref),
    description: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);
export type SecurityGroupRuleCreate = Static<typeof SecurityGroupRuleCreate>;

export const SecurityGroupRule = Type.Object({
  id: Id,
  direction: RuleDirection,
  protocol: RuleProtocol,
  portMin: Type.Union([Type.Integer(), Type.Null()]),
  portMax: Type.Union([Type.Integer(), Type.Null()]),
  remoteCidr: Type.Union([Type.String(), Type.Null()]),
  remoteGroupId: Type.Union([Id, Type.Null()]),
  description: Type.String(),
  createdAt: Timestamp,
});
export type SecurityGroupRule = Static<typeof SecurityGroupRule>;

export const SecurityGroupCreate = Type.Object(
  { name: Name, description: Type.Optional(Type.String({ maxLength: 1024 })) },
  { additionalProperties: false },
);
export type SecurityGroupCreate = Static<typeof SecurityGroupCreate>;

export const SecurityGroup = Type.Object(
  {
    id: Id,
    tenantId: Id,
    name: Name,
    description: Type.String(),
    rules: Type.Array(SecurityGroupRule),
    createdAt: Timestamp,
  },
  { $id: 'SecurityGroup' },
);
export type SecurityGroup = Static<typeof SecurityGroup>;

/** A VM's interface on a network. */
export const Port = Type.Object(
  {
    id: Id,
    vmId: Id,
    networkId: Id,
    networkName: Name,
    mac: Type.String({ pattern: MAC_PATTERN }),
    ipv4: Type.String({ pattern: IPV4_PATTERN }),
    prefixLength: Type.Integer(),
    securityGroups: Type.Array(Type.Object({ id: Id, name: Name })),
    allowedAddresses: Type.Array(Type.String()),
    /** Isolated (quarantined): the host drops every frame from and to it (PUT /v1/vms/{vm}/isolation). */
    quarantined: Type.Boolean(),
    /** Live packet counters from the host (null when the host is not connected or the VM not placed). */
    counters: Type.Union([
      Type.Object({
        fromGuestPackets: Type.Integer(),
        spoofDrops: Type.Record(Type.String(), Type.Integer()),
        ingressDenied: Type.Integer(),
        egressDenied: Type.Integer(),
      }),
      Type.Null(),
    ]),
  },
  { $id: 'Port' },
);
export type Port = Static<typeof Port>;

export const PortSecurityGroupsUpdate = Type.Object(
  { securityGroups: Type.Array(Ref, { minItems: 0, maxItems: 16, uniqueItems: true }) },
  { additionalProperties: false },
);
export type PortSecurityGroupsUpdate = Static<typeof PortSecurityGroupsUpdate>;

export const AllowedAddressesUpdate = Type.Object(
  { allowedAddresses: Type.Array(Cidr, { maxItems: 16, uniqueItems: true }) },
  { additionalProperties: false },
);
export type AllowedAddressesUpdate = Static<typeof AllowedAddressesUpdate>;
