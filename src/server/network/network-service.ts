/**
 * Tenant networks, IPAM, security groups and VM ports: the intent. Everything is tenant-scoped (another
 * tenant's objects answer 404). The firewall of a host is derived from it (firewallFor) and pushed to
 * the host's agent, which renders it into nftables; see src/api/host-network.ts.
 *
 * Semantics (OpenStack-like): a port carries one or more security groups, whose rules add up; ingress
 * is denied and egress allowed unless a rule says otherwise (the `default` group, created for each
 * tenant on first use, allows all egress and no ingress); filtering is stateful, so return traffic
 * needs no rule; a rule's remote is a CIDR or another group (its members' addresses).
 */
import { randomBytes } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import { ConflictError, InvalidInputError, NotFoundError } from '../../api/errors.js';
import type { FirewallRule, HostFirewall, PortIntent } from '../../api/host-network.js';
import type {
  Network,
  NetworkCreate,
  NetworkUpdate,
  Port,
  SecurityGroup,
  SecurityGroupCreate,
  SecurityGroupRule,
  SecurityGroupRuleCreate,
} from '../../api/network.js';
import { isUuid, newId } from '../../common/ids.js';
import type { QuotaService } from '../quota/quota-service.js';
import { LOCK_CLASS, isUniqueError, lockOnPostgres, nowIso, type Db } from '../store/database.js';
import type {
  Database,
  NetworksTable,
  PortsTable,
  SecurityGroupRulesTable,
  SecurityGroupsTable,
} from '../store/schema.js';
import { intToIp, ipToInt, parseCidr, usableRange } from './ipv4.js';

type Executor = Db | Transaction<Database>;

export const DEFAULT_GROUP = 'default';
const MIN_PREFIX = 8;
const MAX_PREFIX = 29;

export function bridgeName(networkId: string): string {
  return `rpb${networkId.replace(/-/g, '').slice(0, 12)}`;
}

export function tapName(portId: string): string {
  return `rpt${portId.replace(/-/g, '').slice(0, 12)}`;
}

function randomMac(): string {
  const bytes = randomBytes(3);
  return ['52', '54', '00', ...[...bytes].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

function ruleToApi(row: SecurityGroupRulesTable): SecurityGroupRule {
  return {
    id: row.id,
    direction: row.direction,
    protocol: row.protocol,
    portMin: row.portMin,
    portMax: row.portMax,
    remoteCidr: row.remoteCidr,
    remoteGroupId: row.remoteGroupId,
    description: row.description,
    createdAt: row.createdAt,
  };
}

function conflictOnUnique(what: string) {
  return (error: unknown) => {
    if (isUniqueError(error)) throw new ConflictError(`${what} already exists`);
    throw error;
  };
}

export class NetworkService {
  constructor(
    private readonly db: Db,
    private readonly quotas: QuotaService,
  ) {}

  // ---------------------------------------------------------------- networks

  async createNetwork(tenantId: string, input: NetworkCreate): Promise<Network> {
    const subnet = parseCidr(input.cidr, { strict: true });
    if (subnet.prefixLength < MIN_PREFIX || subnet.prefixLength > MAX_PREFIX)
      throw new InvalidInputError(
        `a network is a /${MIN_PREFIX} to /${MAX_PREFIX}, not /${subnet.prefixLength}`,
      );
    const row: NetworksTable = {
      id: newId(),
      tenantId,
      name: input.name,
      cidr: subnet.cidr,
      zone: 0,
      outbound: input.outbound ? 1 : 0,
      description: input.description ?? '',
      createdAt: nowIso(),
    };
    await this.db.transaction().execute(async (trx) => {
      await this.quotas.admit(trx, tenantId, { networks: 1 });
      if (row.outbound) await assertNoOutboundOverlap(trx, row);
      row.zone = await nextNumber(trx, 'networks', 'zone');
      await trx
        .insertInto('networks')
        .values(row)
        .execute()
        .catch(conflictOnUnique(`a network named ${input.name}`));
    });
    return this.networkToApi(row);
  }

  async listNetworks(tenantId: string): Promise<Network[]> {
    const rows = await this.db
      .selectFrom('networks')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .orderBy('name')
      .execute();
    return Promise.all(rows.map((r) => this.networkToApi(r)));
  }

  async findNetwork(ref: string, tenantId: string, db: Executor = this.db): Promise<NetworksTable> {
    const row = await db
      .selectFrom('networks')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where(isUuid(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('network');
    return row;
  }

  async getNetwork(ref: string, tenantId: string): Promise<Network> {
    return this.networkToApi(await this.findNetwork(ref, tenantId));
  }

  /** Turns outbound access on or off, or changes the description. */
  async updateNetwork(ref: string, tenantId: string, input: NetworkUpdate): Promise<Network> {
    const network = await this.findNetwork(ref, tenantId);
    const next: NetworksTable = {
      ...network,
      ...(input.outbound !== undefined ? { outbound: input.outbound ? 1 : 0 } : {}),
      ...(input.description !== undefined ? { description: input.description } : {}),
    };
    await this.db.transaction().execute(async (trx) => {
      if (next.outbound && !network.outbound) await assertNoOutboundOverlap(trx, next);
      await trx
        .updateTable('networks')
        .set({ outbound: next.outbound, description: next.description })
        .where('id', '=', network.id)
        .execute();
    });
    return this.networkToApi(next);
  }

  /** Hosts with VMs on this network. */
  async hostsOfNetwork(networkId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('ports')
      .innerJoin('vms', 'vms.id', 'ports.vmId')
      .select('vms.hostId')
      .distinct()
      .where('ports.networkId', '=', networkId)
      .where('vms.hostId', 'is not', null)
      .execute();
    return rows.map((r) => r.hostId!);
  }

  async deleteNetwork(ref: string, tenantId: string): Promise<NetworksTable> {
    const network = await this.findNetwork(ref, tenantId);
    const used = await this.db
      .selectFrom('ports')
      .select('vmId')
      .where('networkId', '=', network.id)
      .executeTakeFirst();
    if (used) throw new ConflictError(`network ${network.name} still has VM ports; delete those VMs first`);
    await this.db.deleteFrom('networks').where('id', '=', network.id).execute();
    return network;
  }

  private async networkToApi(row: NetworksTable): Promise<Network> {
    const ports = await this.db
      .selectFrom('ports')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('networkId', '=', row.id)
      .executeTakeFirstOrThrow();
    return {
      id: row.id,
      tenantId: row.tenantId,
      name: row.name,
      cidr: row.cidr,
      gateway: gatewayOf(row.cidr),
      outbound: row.outbound === 1,
      capacity: usableRange(parseCidr(row.cidr)).count,
      ports: Number(ports.n),
      description: row.description,
      createdAt: row.createdAt,
    };
  }

  // ---------------------------------------------------------------- security groups

  /** The tenant's `default` group (all egress, no ingress), created on first use. */
  async ensureDefaultGroup(tenantId: string, db: Executor = this.db): Promise<SecurityGroupsTable> {
    const existing = await db
      .selectFrom('securityGroups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where('name', '=', DEFAULT_GROUP)
      .executeTakeFirst();
    if (existing) return existing;
    const now = nowIso();
    const group: SecurityGroupsTable = {
      id: newId(),
      tenantId,
      name: DEFAULT_GROUP,
      description: 'created by Rampart: all egress, no ingress',
      createdAt: now,
    };
    await db
      .insertInto('securityGroups')
      .values(group)
      .onConflict((oc) => oc.doNothing())
      .execute();
    const stored = await db
      .selectFrom('securityGroups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where('name', '=', DEFAULT_GROUP)
      .executeTakeFirstOrThrow();
    if (stored.id === group.id) {
      await db
        .insertInto('securityGroupRules')
        .values({
          id: newId(),
          groupId: group.id,
          direction: 'egress',
          protocol: 'any',
          portMin: null,
          portMax: null,
          remoteCidr: '0.0.0.0/0',
          remoteGroupId: null,
          description: 'all egress',
          createdAt: now,
        })
        .execute();
    }
    return stored;
  }

  async createGroup(tenantId: string, input: SecurityGroupCreate): Promise<SecurityGroup> {
    const row: SecurityGroupsTable = {
      id: newId(),
      tenantId,
      name: input.name,
      description: input.description ?? '',
      createdAt: nowIso(),
    };
    await this.db.transaction().execute(async (trx) => {
      await this.quotas.admit(trx, tenantId, { securityGroups: 1 });
      await trx
        .insertInto('securityGroups')
        .values(row)
        .execute()
        .catch(conflictOnUnique(`a security group named ${input.name}`));
    });
    return { ...row, rules: [] };
  }

  async findGroup(ref: string, tenantId: string, db: Executor = this.db): Promise<SecurityGroupsTable> {
    if (ref === DEFAULT_GROUP) await this.ensureDefaultGroup(tenantId, db);
    const row = await db
      .selectFrom('securityGroups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .where(isUuid(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('security group');
    return row;
  }

  async listGroups(tenantId: string): Promise<SecurityGroup[]> {
    await this.ensureDefaultGroup(tenantId);
    const groups = await this.db
      .selectFrom('securityGroups')
      .selectAll()
      .where('tenantId', '=', tenantId)
      .orderBy('name')
      .execute();
    const rules = await this.db
      .selectFrom('securityGroupRules')
      .selectAll()
      .where('groupId', 'in', groups.length > 0 ? groups.map((g) => g.id) : [''])
      .orderBy('createdAt')
      .orderBy('id')
      .execute();
    return groups.map((g) => ({ ...g, rules: rules.filter((r) => r.groupId === g.id).map(ruleToApi) }));
  }

  async getGroup(ref: string, tenantId: string): Promise<SecurityGroup> {
    const group = await this.findGroup(ref, tenantId);
    const rules = await this.db
      .selectFrom('securityGroupRules')
      .selectAll()
      .where('groupId', '=', group.id)
      .orderBy('createdAt')
      .orderBy('id')
      .execute();
    return { ...group, rules: rules.map(ruleToApi) };
  }

  async deleteGroup(ref: string, tenantId: string): Promise<SecurityGroupsTable> {
    const group = await this.findGroup(ref, tenantId);
    const used = await this.db
      .selectFrom('portSecurityGroups')
      .select('portId')
      .where('groupId', '=', group.id)
      .executeTakeFirst();
    if (used) throw new ConflictError(`security group ${group.name} is used by VM ports`);
    const referenced = await this.db
      .selectFrom('securityGroupRules')
      .innerJoin('securityGroups', 'securityGroups.id', 'securityGroupRules.groupId')
      .select('securityGroups.name')
      .where('securityGroupRules.remoteGroupId', '=', group.id)
      .where('securityGroupRules.groupId', '!=', group.id)
      .executeTakeFirst();
    if (referenced)
      throw new ConflictError(
        `security group ${group.name} is the remote of a rule in group ${referenced.name}`,
      );
    await this.db.deleteFrom('securityGroups').where('id', '=', group.id).execute();
    return group;
  }

  async addRule(ref: string, tenantId: string, input: SecurityGroupRuleCreate): Promise<SecurityGroupRule> {
    const group = await this.findGroup(ref, tenantId);
    const hasPorts = input.portMin !== undefined || input.portMax !== undefined;
    if (hasPorts && input.protocol !== 'tcp' && input.protocol !== 'udp')
      throw new InvalidInputError('ports apply to tcp and udp rules only');
    if (hasPorts && (input.portMin === undefined || input.portMax === undefined))
      throw new InvalidInputError('give both portMin and portMax (equal for one port)');
    if (hasPorts && input.portMin! > input.portMax!)
      throw new InvalidInputError('portMin is greater than portMax');
    if (input.remoteCidr !== undefined && input.remoteGroup !== undefined)
      throw new InvalidInputError('give remoteCidr or remoteGroup, not both');
    const remoteGroupId =
      input.remoteGroup !== undefined ? (await this.findGroup(input.remoteGroup, tenantId)).id : null;
    const remoteCidr = remoteGroupId === null ? parseCidr(input.remoteCidr ?? '0.0.0.0/0').cidr : null;
    const row: SecurityGroupRulesTable = {
      id: newId(),
      groupId: group.id,
      direction: input.direction,
      protocol: input.protocol,
      portMin: input.portMin ?? null,
      portMax: input.portMax ?? null,
      remoteCidr,
      remoteGroupId,
      description: input.description ?? '',
      createdAt: nowIso(),
    };
    await this.db.transaction().execute(async (trx) => {
      await this.quotas.admit(trx, tenantId, { securityGroupRules: 1 });
      await trx.insertInto('securityGroupRules').values(row).execute();
    });
    return ruleToApi(row);
  }

  async deleteRule(ref: string, tenantId: string, ruleId: string): Promise<SecurityGroupRulesTable> {
    const group = await this.findGroup(ref, tenantId);
    const row = await this.db
      .deleteFrom('securityGroupRules')
      .where('id', '=', ruleId)
      .where('groupId', '=', group.id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new NotFoundError('security group rule');
    return row;
  }

  // ---------------------------------------------------------------- ports

  /**
   * Creates a VM's port on a network (inside the VM create transaction): the lowest free address, a
   * random MAC, the next free tag, and its security groups (default: `default`).
   */
  async createPort(
    trx: Transaction<Database>,
    tenantId: string,
    vmId: string,
    networkRef: string,
    groupRefs: readonly string[] | undefined,
  ): Promise<PortsTable> {
    const network = await this.findNetwork(networkRef, tenantId, trx).catch((error: unknown) => {
      if (error instanceof NotFoundError)
        throw new InvalidInputError(`network ${JSON.stringify(networkRef)} not found`);
      throw error;
    });
    const groups = [];
    for (const ref of groupRefs ?? [DEFAULT_GROUP]) {
      groups.push(
        await this.findGroup(ref, tenantId, trx).catch((error: unknown) => {
          if (error instanceof NotFoundError)
            throw new InvalidInputError(`security group ${JSON.stringify(ref)} not found`);
          throw error;
        }),
      );
    }
    // The lowest free address and the next tag are read and taken under one lock on PostgreSQL (the
    // same nextNumber() takes again below), so concurrent creates on a network never pick the same one.
    await lockOnPostgres(trx, LOCK_CLASS.networkNumbers, 'ports');
    const range = usableRange(parseCidr(network.cidr));
    const used = new Set(
      (await trx.selectFrom('ports').select('ipv4').where('networkId', '=', network.id).execute()).map((r) =>
        ipToInt(r.ipv4),
      ),
    );
    let address: number | null = null;
    for (let candidate = range.first; candidate <= range.last; candidate += 1) {
      if (!used.has(candidate)) {
        address = candidate;
        break;
      }
    }
    if (address === null) throw new ConflictError(`network ${network.name} has no free address`);
    const port: PortsTable = {
      id: newId(),
      tenantId,
      networkId: network.id,
      vmId,
      tag: await nextNumber(trx, 'ports', 'tag'),
      mac: randomMac(),
      ipv4: intToIp(address),
      allowedAddresses: '[]',
      createdAt: nowIso(),
    };
    await trx.insertInto('ports').values(port).execute();
    if (groups.length > 0)
      await trx
        .insertInto('portSecurityGroups')
        .values(groups.map((g) => ({ portId: port.id, groupId: g.id })))
        .execute();
    return port;
  }

  async findPort(vmId: string, portRef: string): Promise<PortsTable> {
    const row = await this.db
      .selectFrom('ports')
      .selectAll()
      .where('vmId', '=', vmId)
      .where('id', '=', portRef)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('port');
    return row;
  }

  async portsOfVm(vmId: string): Promise<Omit<Port, 'counters'>[]> {
    const rows = await this.db
      .selectFrom('ports')
      .innerJoin('networks', 'networks.id', 'ports.networkId')
      .selectAll('ports')
      .select(['networks.name as networkName', 'networks.cidr as cidr'])
      .where('ports.vmId', '=', vmId)
      .orderBy('ports.createdAt')
      .execute();
    const links = await this.db
      .selectFrom('portSecurityGroups')
      .innerJoin('securityGroups', 'securityGroups.id', 'portSecurityGroups.groupId')
      .select(['portSecurityGroups.portId', 'securityGroups.id', 'securityGroups.name'])
      .where('portSecurityGroups.portId', 'in', rows.length > 0 ? rows.map((r) => r.id) : [''])
      .orderBy('securityGroups.name')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      vmId: r.vmId,
      networkId: r.networkId,
      networkName: r.networkName,
      mac: r.mac,
      ipv4: r.ipv4,
      prefixLength: parseCidr(r.cidr).prefixLength,
      securityGroups: links.filter((l) => l.portId === r.id).map((l) => ({ id: l.id, name: l.name })),
      allowedAddresses: JSON.parse(r.allowedAddresses) as string[],
      quarantined: r.quarantined === 1,
    }));
  }

  async setPortGroups(port: PortsTable, refs: readonly string[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const groups = [];
      for (const ref of refs) {
        groups.push(
          await this.findGroup(ref, port.tenantId, trx).catch((error: unknown) => {
            if (error instanceof NotFoundError)
              throw new InvalidInputError(`security group ${JSON.stringify(ref)} not found`);
            throw error;
          }),
        );
      }
      await trx.deleteFrom('portSecurityGroups').where('portId', '=', port.id).execute();
      if (groups.length > 0)
        await trx
          .insertInto('portSecurityGroups')
          .values(groups.map((g) => ({ portId: port.id, groupId: g.id })))
          .execute();
    });
  }

  /** Extra source addresses (platform admins only). Never 0.0.0.0/0, nothing wider than a /8. */
  async setAllowedAddresses(port: PortsTable, cidrs: readonly string[]): Promise<void> {
    const normalized = cidrs.map((c) => parseCidr(c));
    const tooWide = normalized.find((s) => s.prefixLength < MIN_PREFIX);
    if (tooWide)
      throw new InvalidInputError(
        `${tooWide.cidr} is too wide: allowed addresses are /${MIN_PREFIX} or narrower (never 0.0.0.0/0)`,
      );
    await this.db
      .updateTable('ports')
      .set({ allowedAddresses: JSON.stringify([...new Set(normalized.map((s) => s.cidr))]) })
      .where('id', '=', port.id)
      .execute();
  }

  /** The port intents of a VM for its host's agent. */
  async portIntents(vmId: string): Promise<PortIntent[]> {
    const rows = await this.db
      .selectFrom('ports')
      .innerJoin('networks', 'networks.id', 'ports.networkId')
      .selectAll('ports')
      .select(['networks.cidr as cidr', 'networks.zone as zone', 'networks.outbound as outbound'])
      .where('ports.vmId', '=', vmId)
      .orderBy('ports.createdAt')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      networkId: r.networkId,
      bridge: bridgeName(r.networkId),
      tap: tapName(r.id),
      tag: r.tag,
      zone: r.zone,
      mac: r.mac,
      ipv4: r.ipv4,
      prefixLength: parseCidr(r.cidr).prefixLength,
      // Always the first address: it answers once outbound access is turned on, without a reboot.
      gateway: gatewayOf(r.cidr),
      allowedAddresses: JSON.parse(r.allowedAddresses) as string[],
      ...(r.quarantined === 1 ? { quarantined: true } : {}),
    }));
  }

  /** Isolates (or releases) every port of a VM; answers how many ports it has. */
  async setQuarantine(vmId: string, quarantined: boolean): Promise<number> {
    const result = await this.db
      .updateTable('ports')
      .set({ quarantined: quarantined ? 1 : 0 })
      .where('vmId', '=', vmId)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /**
   * The whole firewall of a host: every port of the VMs placed there and not powered off, and
   * every allowed flow, with remote groups resolved to their members' addresses.
   */
  async firewallFor(hostId: string, generation: number): Promise<HostFirewall> {
    // A VM powered off has no tap on the host, so it has no rules either.
    const vms = await this.db
      .selectFrom('vms')
      .select('id')
      .where('hostId', '=', hostId)
      .where('state', '!=', 'deleting')
      .where('power', '!=', 'stopped')
      .execute();
    const ports: PortIntent[] = [];
    for (const vm of vms) ports.push(...(await this.portIntents(vm.id)));
    if (ports.length === 0) return { generation, ports: [], rules: [], networks: [] };
    const portIds = ports.map((p) => p.id);
    const links = await this.db
      .selectFrom('portSecurityGroups')
      .selectAll()
      .where('portId', 'in', portIds)
      .execute();
    const groupIds = [...new Set(links.map((l) => l.groupId))];
    const rules = groupIds.length
      ? await this.db.selectFrom('securityGroupRules').selectAll().where('groupId', 'in', groupIds).execute()
      : [];
    const remoteIds = [...new Set(rules.map((r) => r.remoteGroupId).filter((g): g is string => g !== null))];
    const members = new Map<string, string[]>();
    if (remoteIds.length > 0) {
      const rows = await this.db
        .selectFrom('portSecurityGroups')
        .innerJoin('ports', 'ports.id', 'portSecurityGroups.portId')
        .select(['portSecurityGroups.groupId', 'ports.ipv4'])
        .where('portSecurityGroups.groupId', 'in', remoteIds)
        .execute();
      for (const row of rows)
        members.set(row.groupId, [...(members.get(row.groupId) ?? []), `${row.ipv4}/32`]);
    }
    const networkRows = await this.db
      .selectFrom('networks')
      .select(['cidr', 'zone', 'outbound', 'id'])
      .where('id', 'in', [...new Set(ports.map((p) => p.networkId))])
      .execute();
    const peers = await this.tunnelPeers(
      hostId,
      networkRows.map((n) => n.id),
    );
    const networks = networkRows.map((n) => ({
      bridge: bridgeName(n.id),
      zone: n.zone,
      cidr: n.cidr,
      gateway: gatewayOf(n.cidr),
      outbound: n.outbound === 1,
      // Spanning hosts: one VNI per network (its zone), the other hosts' tunnel addresses as peers.
      ...(peers.has(n.id) ? { vni: n.zone, peers: peers.get(n.id)! } : {}),
    }));
    const byId = new Map(ports.map((p) => [p.id, p]));
    const out: FirewallRule[] = [];
    for (const link of links) {
      const port = byId.get(link.portId)!;
      for (const rule of rules.filter((r) => r.groupId === link.groupId)) {
        const cidrs = rule.remoteCidr !== null ? [rule.remoteCidr] : (members.get(rule.remoteGroupId!) ?? []);
        for (const cidr of cidrs) {
          out.push({
            tag: port.tag,
            direction: rule.direction,
            protocol: rule.protocol,
            cidr,
            ...(rule.portMin !== null
              ? { portMin: rule.portMin, portMax: rule.portMax ?? rule.portMin }
              : {}),
          });
        }
      }
    }
    return { generation, ports, rules: out, networks };
  }

  /**
   * The tunnel peers of a host's networks: per network, the tunnel addresses of the other hosts with
   * a port of a VM on it that is not powered off (the same VMs firewallFor counts). Empty when the host
   * itself has no tunnel address; hosts without one are never peers.
   */
  async tunnelPeers(hostId: string, networkIds: readonly string[]): Promise<Map<string, string[]>> {
    const peers = new Map<string, string[]>();
    if (networkIds.length === 0) return peers;
    const self = await this.db
      .selectFrom('hosts')
      .select('tunnelIp')
      .where('id', '=', hostId)
      .executeTakeFirst();
    if (!self?.tunnelIp) return peers;
    const rows = await this.db
      .selectFrom('ports')
      .innerJoin('vms', 'vms.id', 'ports.vmId')
      .innerJoin('hosts', 'hosts.id', 'vms.hostId')
      .select(['ports.networkId', 'hosts.tunnelIp'])
      .distinct()
      .where('ports.networkId', 'in', [...networkIds])
      .where('vms.hostId', '!=', hostId)
      .where('vms.state', '!=', 'deleting')
      .where('vms.power', '!=', 'stopped')
      .where('hosts.tunnelIp', 'is not', null)
      .execute();
    for (const row of rows) {
      if (!row.tunnelIp || row.tunnelIp === self.tunnelIp) continue;
      const list = peers.get(row.networkId) ?? [];
      if (!list.includes(row.tunnelIp)) list.push(row.tunnelIp);
      peers.set(row.networkId, list);
    }
    for (const list of peers.values()) list.sort();
    return peers;
  }

  /**
   * The hosts whose firewall (tunnel peers) may change when something changes on `hostIds`: those
   * hosts, and every host with a VM on a network that has a port of a VM on one of them (in any power
   * state) or is one of `networkIds` (the networks of a VM that is gone).
   */
  async hostsSharingNetworks(
    hostIds: readonly string[],
    networkIds: readonly string[] = [],
  ): Promise<string[]> {
    const hosts = new Set(hostIds);
    if (hostIds.length === 0 && networkIds.length === 0) return [];
    const touched = new Set(networkIds);
    if (hostIds.length > 0) {
      const rows = await this.db
        .selectFrom('ports')
        .innerJoin('vms', 'vms.id', 'ports.vmId')
        .select('ports.networkId')
        .distinct()
        .where('vms.hostId', 'in', [...hosts])
        .execute();
      for (const row of rows) touched.add(row.networkId);
    }
    if (touched.size === 0) return [...hosts];
    const rows = await this.db
      .selectFrom('ports')
      .innerJoin('vms', 'vms.id', 'ports.vmId')
      .innerJoin('hosts', 'hosts.id', 'vms.hostId')
      .select('vms.hostId')
      .distinct()
      .where('ports.networkId', 'in', [...touched])
      .where('hosts.tunnelIp', 'is not', null)
      .execute();
    for (const row of rows) if (row.hostId) hosts.add(row.hostId);
    return [...hosts];
  }

  /** Hosts with VMs of this tenant (a change to its groups may change their firewalls). */
  async hostsOfTenant(tenantId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('vms')
      .select('hostId')
      .distinct()
      .where('tenantId', '=', tenantId)
      .where('hostId', 'is not', null)
      .execute();
    return rows.map((r) => r.hostId!);
  }
}

/** The first address of a subnet: the guests' gateway (on the bridge while outbound is on). */
export function gatewayOf(cidr: string): string {
  return intToIp(parseCidr(cidr).base + 1);
}

/**
 * Outbound networks put their gateway on a host bridge, so two of them must not overlap on a host
 * (the host could not route replies). Checked platform-wide; the message names no other tenant.
 */
async function assertNoOutboundOverlap(trx: Executor, network: NetworksTable): Promise<void> {
  const mine = parseCidr(network.cidr);
  const others = await trx
    .selectFrom('networks')
    .select(['id', 'cidr'])
    .where('outbound', '=', 1)
    .where('id', '!=', network.id)
    .execute();
  const size = (s: { prefixLength: number }) => 2 ** (32 - s.prefixLength);
  for (const other of others) {
    const theirs = parseCidr(other.cidr);
    if (mine.base < theirs.base + size(theirs) && theirs.base < mine.base + size(mine))
      throw new ConflictError(
        `${network.cidr} overlaps a network that already has outbound access; choose another subnet for outbound access`,
      );
  }
}

/** The next free number of a unique integer column (1-based, at most 65535; tags 65534). */
async function nextNumber(
  trx: Executor,
  table: 'networks' | 'ports',
  column: 'zone' | 'tag',
): Promise<number> {
  // Replicas on PostgreSQL: MAX + 1 is read and used under an advisory lock until the transaction ends
  // (the unique index would otherwise fail one of two racing creates).
  await lockOnPostgres(trx, LOCK_CLASS.networkNumbers, table);
  const row = await sql<{
    next: number | null;
  }>`SELECT MAX(${sql.ref(column)}) + 1 AS next FROM ${sql.table(table)}`.execute(trx);
  // Port tag 65535 is never handed out: the low half of the packet mark uses it for "to the tunnel"
  // (src/agent/net/nft-ruleset.ts).
  const max = column === 'tag' ? 65_534 : 65_535;
  const next = row.rows[0]?.next ?? 1;
  if (next <= max) return next;
  // Wrapped: the lowest number no longer in use.
  const free = await sql<{
    n: number;
  }>`WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ${sql.lit(max)})
    SELECT n FROM seq WHERE n NOT IN (SELECT ${sql.ref(column)} FROM ${sql.table(table)}) LIMIT 1`.execute(
    trx,
  );
  const n = free.rows[0]?.n;
  if (n === undefined) throw new ConflictError(`no free ${column} number left`);
  return n;
}
