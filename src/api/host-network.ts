/**
 * What the server tells an agent about networking on its host (part of the agent protocol): the ports
 * of its VMs (a tap on the network's bridge, with the addresses the port may use) and the host's whole
 * firewall state (security-group rules already resolved to addresses). The agent renders this into one
 * nftables ruleset and applies it as one transaction; it never decides policy itself.
 *
 * Identifiers are small integers chosen by the server so the packet path can use them in marks and
 * maps: `tag` numbers a port on its host (1..65535, unique per host), `zone` numbers a network (its
 * conntrack zone, 1..65535, unique per host) so overlapping tenant address ranges never share state.
 */
import { Type, type Static } from 'typebox';
import { UUID_PATTERN } from '../common/ids.js';

const Uuid = Type.String({ pattern: UUID_PATTERN });
/** Interface names are built by the server from ids: `rpb` + 12 hex (bridge), `rpt` + 12 hex (tap). */
export const BRIDGE_NAME_PATTERN = '^rpb[0-9a-f]{12}$';
export const TAP_NAME_PATTERN = '^rpt[0-9a-f]{12}$';
/** A network's VXLAN device on a host (`rpx` + the same 12 hex as its bridge): made by the agent. */
export const TUNNEL_NAME_PATTERN = '^rpx[0-9a-f]{12}$';
/** The UDP port of Rampart's VXLAN tunnels between hosts (IANA's VXLAN port). */
export const VXLAN_PORT = 4789;
export const IPV4_PATTERN =
  '^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$';
export const CIDR4_PATTERN = `${IPV4_PATTERN.slice(0, -1)}/([0-9]|[12][0-9]|3[0-2])$`;
export const MAC_PATTERN = '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$';

const Tag = Type.Integer({ minimum: 1, maximum: 65_535 });

/** One VM network interface on this host. */
export const PortIntent = Type.Object(
  {
    id: Uuid,
    networkId: Uuid,
    /** The network's bridge on this host (created on demand, removed when no port uses it). */
    bridge: Type.String({ pattern: BRIDGE_NAME_PATTERN }),
    /** The VM's tap, owned by the VM's uid so its unprivileged QEMU can open it. */
    tap: Type.String({ pattern: TAP_NAME_PATTERN }),
    tag: Tag,
    zone: Tag,
    mac: Type.String({ pattern: MAC_PATTERN }),
    ipv4: Type.String({ pattern: IPV4_PATTERN }),
    prefixLength: Type.Integer({ minimum: 8, maximum: 30 }),
    gateway: Type.Union([Type.String({ pattern: IPV4_PATTERN }), Type.Null()]),
    /** Extra source addresses an admin allowed on this port (never 0.0.0.0/0). */
    allowedAddresses: Type.Array(Type.String({ pattern: CIDR4_PATTERN }), { maxItems: 16 }),
    /** Isolated (quarantined by a person or a detection rule): every frame from and to it dropped. */
    quarantined: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PortIntent = Static<typeof PortIntent>;

export const FirewallProtocol = Type.Union([
  Type.Literal('tcp'),
  Type.Literal('udp'),
  Type.Literal('icmp'),
  Type.Literal('any'),
]);
export type FirewallProtocol = Static<typeof FirewallProtocol>;

/**
 * One allowed flow for one port, already resolved: for `ingress`, traffic from `cidr` to the port; for
 * `egress`, traffic from the port to `cidr`. Ports only for tcp/udp (absent: every port).
 */
export const FirewallRule = Type.Object(
  {
    tag: Tag,
    direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
    protocol: FirewallProtocol,
    cidr: Type.String({ pattern: CIDR4_PATTERN }),
    portMin: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_535 })),
    portMax: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_535 })),
  },
  { additionalProperties: false },
);
export type FirewallRule = Static<typeof FirewallRule>;

/** A network with ports on this host. */
export const NetworkIntent = Type.Object(
  {
    bridge: Type.String({ pattern: BRIDGE_NAME_PATTERN }),
    zone: Tag,
    cidr: Type.String({ pattern: CIDR4_PATTERN }),
    /** The first address: on the bridge (and the guests' gateway) only while outbound is on. */
    gateway: Type.String({ pattern: IPV4_PATTERN }),
    /** Outbound access through NAT on the host. */
    outbound: Type.Boolean(),
    /**
     * A network that spans hosts: its VXLAN network identifier (the network's zone, the same on every
     * host) and the tunnel (underlay) addresses of the other hosts with ports on it. Absent or empty
     * peers: the network stays on this host (no tunnel device).
     */
    vni: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_215 })),
    peers: Type.Optional(Type.Array(Type.String({ pattern: IPV4_PATTERN }), { maxItems: 4096 })),
  },
  { additionalProperties: false },
);
export type NetworkIntent = Static<typeof NetworkIntent>;

/** The host's complete firewall intent: every port on it and every allowed flow. */
export const HostFirewall = Type.Object(
  {
    /** Bumped by the server on every change; the agent reports the generation it applied. */
    generation: Type.Integer({ minimum: 0 }),
    ports: Type.Array(PortIntent, { maxItems: 65_535 }),
    rules: Type.Array(FirewallRule, { maxItems: 1_000_000 }),
    /** The networks of the ports (absent: none is outbound). */
    networks: Type.Optional(Type.Array(NetworkIntent, { maxItems: 65_535 })),
    /**
     * Filled in by the agent, never sent: the host's own subnets outside Rampart (its management
     * plane), which outbound traffic may never enter.
     */
    managementNets: Type.Optional(Type.Array(Type.String({ pattern: CIDR4_PATTERN }), { maxItems: 1024 })),
  },
  { additionalProperties: false },
);
export type HostFirewall = Static<typeof HostFirewall>;

/** Why a packet from a guest was dropped by anti-spoofing (one counter per port and reason). */
export const SPOOF_REASONS = ['mac', 'ip', 'arp', 'dhcp-server', 'router-advert', 'ethertype'] as const;
export type SpoofReason = (typeof SPOOF_REASONS)[number];

/** Packet counters of one port as the kernel reports them. */
export const PortCounters = Type.Object({
  tag: Tag,
  tap: Type.String(),
  /** Packets from the guest that passed anti-spoofing. */
  fromGuestPackets: Type.Integer({ minimum: 0 }),
  /** Drops by anti-spoofing reason. */
  spoofDrops: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
  /** New connections to the port refused by its security groups. */
  ingressDenied: Type.Integer({ minimum: 0 }),
  /** New connections from the port refused by its security groups. */
  egressDenied: Type.Integer({ minimum: 0 }),
});
export type PortCounters = Static<typeof PortCounters>;
