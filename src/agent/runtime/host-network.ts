/**
 * The agent's side of tenant networking: keeps the host firewall equal to what the server last sent
 * (applied in one nft transaction; compared with the live ruleset at start and periodically, drift
 * repaired and reported as an event), creates a VM's taps on their bridges before QEMU starts and
 * removes them (and bridges nobody uses) when the VM goes.
 *
 * With RAMPART_NETNS every network command, and QEMU itself, runs inside that network namespace (a
 * test, or several agents on one machine standing for several hosts).
 *
 * Networks that span hosts: with RAMPART_TUNNEL_IP, a network whose intent names peers gets a VXLAN
 * device on its bridge (VNI from the server, head-end replication to each peer), created after the
 * firewall that knows it and removed with the network's last port here or its last peer.
 */
import type { HostFirewall, PortCounters, PortIntent } from '../../api/host-network.js';
import type { Logger } from '../../common/logger.js';
import { HostFirewallManager, type FirewallTelemetry } from '../net/firewall.js';
import { applyShaping, removeShaping } from '../net/tap-shaper.js';
import {
  ensurePort,
  ensureTunnel,
  listTunnelBridges,
  managementSubnets,
  removeBridgeIfUnused,
  removePort,
  removeTunnel,
  setBridgeGateway,
  type TunnelSpec,
  type VmOwner,
} from '../net/port-devices.js';

export interface HostNetworkOptions {
  netns?: string;
  /** RAMPART_TUNNEL_IP: this host's VXLAN underlay address (absent: no tunnels). */
  tunnelIp?: string;
  log: Logger;
  /** How often the live ruleset is compared with the intended one (0: only when asked). */
  reconcileIntervalMs?: number;
  /** Told about each repaired drift (the agent forwards it to the server as an event). */
  onDrift?: (differences: string[]) => void;
  /** The nft side (tests may pass a stand-in; default: the real manager in the namespace). */
  firewall?: FirewallPort;
}

/** What HostNetwork uses of the firewall manager. */
export type FirewallPort = Pick<
  HostFirewallManager,
  'apply' | 'reconcile' | 'remove' | 'readCounters' | 'readTelemetry'
>;

export class HostNetwork {
  private readonly firewall: FirewallPort;
  private intended: HostFirewall | null = null;
  private timer: NodeJS.Timeout | null = null;
  /**
   * apply() and reconcile() run one at a time: a reconciliation that read the intent before a new
   * firewall was applied would otherwise put the old ruleset back after it (a deleted security group
   * rule would come back until the next change).
   */
  private serial: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: HostNetworkOptions) {
    this.firewall =
      options.firewall ??
      new HostFirewallManager(options.netns === undefined ? {} : { netns: options.netns });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.serial.then(work, work);
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * The network namespace QEMU joins (`nsenter --net=<path>`, in the same call that enters its jail),
   * or null for the agent's own.
   */
  qemuNetnsPath(): string | null {
    return this.options.netns === undefined ? null : `/run/netns/${this.options.netns}`;
  }

  /**
   * Applies the server's firewall (an older generation than the one applied is ignored). A host with
   * no ports has no Rampart tables at all: nothing is left behind in the host's ruleset.
   */
  apply(firewall: HostFirewall): Promise<number> {
    return this.exclusive(() => this.applyNow(firewall));
  }

  private async applyNow(firewall: HostFirewall): Promise<number> {
    if (this.intended && firewall.generation < this.intended.generation) return this.intended.generation;
    if (firewall.ports.length === 0) {
      await this.syncTunnels(firewall);
      await this.firewall.remove();
      this.intended = firewall;
      return firewall.generation;
    }
    // Gateways first (bridges with outbound access get theirs, others lose it), then the rules, with
    // the host's own subnets as the management plane no guest may enter.
    for (const network of firewall.networks ?? []) {
      const prefix = network.cidr.split('/')[1]!;
      await setBridgeGateway(
        network.bridge,
        network.outbound ? `${network.gateway}/${prefix}` : null,
        this.deviceOptions(),
      );
    }
    const full: HostFirewall = { ...firewall, managementNets: await managementSubnets(this.deviceOptions()) };
    await this.firewall.apply(full);
    this.intended = full;
    // Tunnels after the firewall that marks and filters what crosses them.
    await this.syncTunnels(full);
    return firewall.generation;
  }

  /** The tunnels `fw` asks for on this host: networks with ports here and at least one peer. */
  private wantedTunnels(fw: HostFirewall): TunnelSpec[] {
    const local = this.options.tunnelIp;
    if (local === undefined) return [];
    const bridges = new Set(fw.ports.map((p) => p.bridge));
    return (fw.networks ?? [])
      .filter((n) => bridges.has(n.bridge) && n.vni !== undefined && (n.peers ?? []).length > 0)
      .map((n) => ({
        bridge: n.bridge,
        vni: n.vni!,
        local,
        peers: [...new Set(n.peers)].filter((p) => p !== local),
      }))
      .filter((t) => t.peers.length > 0);
  }

  /** Creates and updates the wanted tunnels and deletes every other Rampart tunnel on this host. */
  private async syncTunnels(fw: HostFirewall, only?: ReadonlySet<string>): Promise<void> {
    const wanted = this.wantedTunnels(fw).filter((t) => only === undefined || only.has(t.bridge));
    for (const tunnel of wanted) await ensureTunnel(tunnel, this.deviceOptions());
    if (only !== undefined) return;
    const keep = new Set(wanted.map((t) => t.bridge));
    for (const bridge of await listTunnelBridges(this.deviceOptions()))
      if (!keep.has(bridge)) await removeTunnel(bridge, this.deviceOptions());
  }

  async counters(): Promise<PortCounters[]> {
    return this.firewall.readCounters();
  }

  /** Counters and recently denied flows (empty before the first firewall: no tables yet). */
  async telemetry(): Promise<FirewallTelemetry> {
    if (this.intended === null || this.intended.ports.length === 0) return { counters: [], denied: [] };
    return this.firewall.readTelemetry();
  }

  /**
   * Compares the live ruleset with the intended one and repairs it; returns what was different. Until
   * the server has sent a firewall in this run, the live one (what this host last applied) is kept:
   * an agent restarted without its server must not strip running VMs of their filtering.
   */
  reconcile(): Promise<string[]> {
    return this.exclusive(() => this.reconcileNow());
  }

  private async reconcileNow(): Promise<string[]> {
    const intended = this.intended;
    if (intended === null) return [];
    if (intended.ports.length === 0) {
      await this.firewall.remove();
      await this.syncTunnels(intended);
      return [];
    }
    // The host's own addresses may have changed since (DHCP on the uplink, an operator).
    const current: HostFirewall = {
      ...intended,
      managementNets: await managementSubnets(this.deviceOptions()),
    };
    this.intended = current;
    const differences = await this.firewall.reconcile(current);
    // The tunnels too (a device deleted or a peer entry removed by hand comes back).
    await this.syncTunnels(current);
    if (differences.length > 0) {
      this.options.log.warn({ differences: differences.slice(0, 20) }, 'firewall drift repaired');
      this.options.onDrift?.(differences);
    }
    return differences;
  }

  startReconciling(): void {
    const interval = this.options.reconcileIntervalMs ?? 0;
    if (interval <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      void this.reconcile().catch((error: unknown) =>
        this.options.log.error({ err: (error as Error).message }, 'firewall reconciliation failed'),
      );
    }, interval);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Creates the VM's taps (owned by its uid) on their bridges, rate limited per direction when the
   * flavor says so (tbf on the tap towards the guest, an ifb with tbf for what the guest sends).
   */
  async ensurePorts(ports: readonly PortIntent[], owner: VmOwner, networkMbps?: number): Promise<void> {
    for (const port of ports) {
      await ensurePort(port, owner, this.deviceOptions());
      await applyShaping(
        port.tap,
        networkMbps === undefined ? {} : { toGuestMbps: networkMbps, fromGuestMbps: networkMbps },
        this.deviceOptions(),
      );
    }
    // A bridge recreated for these taps gets its tunnel back (the firewall came first).
    if (this.intended) await this.syncTunnels(this.intended, new Set(ports.map((p) => p.bridge)));
  }

  /** Removes the VM's taps and their ifb devices, then each bridge no other tap uses. */
  async releasePorts(ports: readonly PortIntent[]): Promise<void> {
    for (const port of ports) {
      await removeShaping(port.tap, this.deviceOptions()).catch((error: unknown) =>
        this.options.log.warn({ tap: port.tap, err: (error as Error).message }, 'could not remove shaping'),
      );
      await removePort(port.tap, this.deviceOptions());
    }
    for (const bridge of new Set(ports.map((p) => p.bridge)))
      await removeBridgeIfUnused(bridge, this.deviceOptions());
  }

  private deviceOptions(): { netns?: string } {
    return this.options.netns === undefined ? {} : { netns: this.options.netns };
  }
}
