/**
 * `rampart network ...`: the tenant's networks (isolated layer-2 segments with an IPv4 subnet; a VM
 * created with `--network` gets a port and an address on one). The CIDR's shape is checked here; the
 * server checks the rest (host bits, /8 to /29).
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { Network, Port } from '../../api/network.js';
import type { CommandDeps } from '../context.js';
import { LocalNotFoundError, UsageError } from '../errors.js';
import { formatAge, formatKeyValue, formatTable, shortId } from '../output.js';
import { isUuid, parseName, parseOnOff, parseRef } from '../validation.js';

/** src/api/host-network.ts IPV4_PATTERN and CIDR4_PATTERN (network.test.ts keeps the copies in step). */
export const IPV4_PATTERN =
  '^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$';
export const CIDR4_PATTERN = `${IPV4_PATTERN.slice(0, -1)}/([0-9]|[12][0-9]|3[0-2])$`;
/** src/api/network.ts NetworkCreate.description and SecurityGroupCreate.description. */
export const DESCRIPTION_MAX_LENGTH = 1024;
/** src/api/vm.ts VmCreate.securityGroups and src/api/network.ts PortSecurityGroupsUpdate: at most 16. */
export const PORT_GROUPS_MAX = 16;

const CIDR4_RE = new RegExp(CIDR4_PATTERN);

/** An IPv4 CIDR such as 10.0.0.0/24 (the shape only). */
export function parseCidr(value: string): string {
  if (!CIDR4_RE.test(value)) {
    throw new InvalidArgumentError('Expected an IPv4 CIDR such as 10.0.0.0/24.');
  }
  return value;
}

/** A Commander parser for a description of at most `max` characters. */
export function descriptionOf(max: number): (value: string) => string {
  return (value: string) => {
    if (value.length > max) throw new InvalidArgumentError(`Expected at most ${max} characters.`);
    return value;
  };
}

/** An id (of a rule, a port), or a unique prefix of one (at least 4 characters). */
export function parseIdPrefix(value: string): string {
  const id = value.toLowerCase();
  if (!/^[0-9a-f]{4}[0-9a-f-]{0,32}$/.test(id)) {
    throw new InvalidArgumentError('Expected an id or a unique prefix of one (at least 4 characters).');
  }
  return id;
}

/** Picks the one item whose id is `ref` or starts with it. */
export function pickByIdPrefix<T extends { id: string }>(items: readonly T[], ref: string, what: string): T {
  const matches = isUuid(ref) ? items.filter((i) => i.id === ref) : items.filter((i) => i.id.startsWith(ref));
  const [first, second] = matches;
  if (!first) throw new LocalNotFoundError(`${what} ${JSON.stringify(ref)} not found`);
  if (second) {
    throw new UsageError(
      `${what} ${JSON.stringify(ref)} is ambiguous (${matches.length} match); give more of the id`,
    );
  }
  return first;
}

/**
 * A Commander collector for a repeatable `--security-group`: each occurrence adds one group (name or
 * id). Duplicates are dropped (the API wants unique items).
 */
export function collectGroups(value: string, previous: string[] | undefined): string[] {
  const group = parseRef(value);
  const list = [...(previous ?? [])];
  if (!list.includes(group)) list.push(group);
  if (list.length > PORT_GROUPS_MAX)
    throw new InvalidArgumentError(`At most ${PORT_GROUPS_MAX} security groups.`);
  return list;
}

export function networkTable(networks: readonly Network[], nowMs: number, color = false): string {
  return formatTable(
    ['NAME', 'CIDR', 'OUTBOUND', 'PORTS', 'CAPACITY', 'AGE'],
    networks.map((n) => [
      n.name,
      n.cidr,
      n.outbound ? 'nat' : 'off',
      String(n.ports),
      String(n.capacity),
      formatAge(n.createdAt, nowMs),
    ]),
    color,
  );
}

export function networkDetails(network: Network, nowMs: number, color = false): string {
  return formatKeyValue(
    [
      ['Name', network.name],
      ['ID', network.id],
      ['CIDR', network.cidr],
      ['Gateway', `${network.gateway}${network.outbound ? '' : ' (answers only with outbound access)'}`],
      ['Outbound', network.outbound ? 'on (NAT on the host; never its management networks)' : 'off'],
      ['Ports', String(network.ports)],
      ['Capacity', `${network.capacity} addresses`],
      ['Description', network.description || '-'],
      ['Created', `${network.createdAt} (${formatAge(network.createdAt, nowMs)} ago)`],
    ],
    color,
  );
}

export function registerNetworkCommands(program: Command, deps: CommandDeps): void {
  const network = program
    .command('network')
    .description('tenant networks: isolated layer-2 segments with an IPv4 subnet (VMs join with --network)');

  network
    .command('list')
    .alias('ls')
    .description("list the tenant's networks")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: Network[] }>('GET', '/v1/networks');
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(networkTable(list.items, ctx.now(), ctx.out.color));
    });

  network
    .command('create')
    .description(
      'create a network; its subnet is a /8 to /29 without host bits (the network, broadcast and first ' +
        'addresses are reserved; other tenants may use the same subnet)',
    )
    .argument('<name>', 'network name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .requiredOption('--cidr <cidr>', 'the IPv4 subnet, e.g. 10.0.0.0/24', parseCidr)
    .option('--description <text>', 'a free-form description', descriptionOf(DESCRIPTION_MAX_LENGTH))
    .option('--outbound', 'let VMs reach outside through NAT on the host (default off)')
    .action(
      async (
        name: string,
        opts: { cidr: string; description?: string; outbound?: boolean },
        cmd: Command,
      ) => {
        const ctx = deps.context(cmd);
        const body: { name: string; cidr: string; description?: string; outbound?: boolean } = {
          name,
          cidr: opts.cidr,
        };
        if (opts.description !== undefined) body.description = opts.description;
        if (opts.outbound) body.outbound = true;
        const created = await ctx.client.request<Network>('POST', '/v1/networks', { body });
        if (ctx.out.json) ctx.out.printJson(created);
        else
          ctx.out.print(
            `network ${created.name}: created (${created.cidr}, ${created.capacity} addresses for VMs)`,
          );
      },
    );

  network
    .command('set')
    .description('turn outbound access (NAT on the host) on or off, or change the description')
    .argument('<ref>', 'network name or id', parseRef)
    .option('--outbound <on|off>', 'outbound access through NAT on the host', parseOnOff)
    .option('--description <text>', 'a free-form description', descriptionOf(DESCRIPTION_MAX_LENGTH))
    .action(async (ref: string, opts: { outbound?: boolean; description?: string }, cmd: Command) => {
      if (opts.outbound === undefined && opts.description === undefined)
        throw new InvalidArgumentError('Nothing to change: give --outbound on|off or --description.');
      const ctx = deps.context(cmd);
      const updated = await ctx.client.request<Network>('PATCH', `/v1/networks/${encodeURIComponent(ref)}`, {
        body: {
          ...(opts.outbound !== undefined ? { outbound: opts.outbound } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
        },
      });
      if (ctx.out.json) ctx.out.printJson(updated);
      else ctx.out.print(networkDetails(updated, ctx.now(), ctx.out.color));
    });

  network
    .command('show')
    .description('show a network')
    .argument('<ref>', 'network name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.request<Network>('GET', `/v1/networks/${encodeURIComponent(ref)}`);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(networkDetails(found, ctx.now(), ctx.out.color));
    });

  network
    .command('delete')
    .alias('rm')
    .description('delete a network that no VM uses (delete those VMs first)')
    .argument('<ref>', 'network name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.request<unknown>('DELETE', `/v1/networks/${encodeURIComponent(ref)}`);
      if (!ctx.out.json) ctx.out.print(`network ${ref}: deleted`);
    });
}

/** Total spoofing drops of a port's counters (all reasons). */
function spoofDrops(port: Port): string {
  if (!port.counters) return '-';
  return String(Object.values(port.counters.spoofDrops).reduce((sum, n) => sum + n, 0));
}

export function portTable(ports: readonly Port[], color = false): string {
  return formatTable(
    ['PORT', 'NETWORK', 'IPV4', 'MAC', 'GROUPS', 'SPOOF-DROPS', 'INGRESS-DENIED'],
    ports.map((p) => [
      shortId(p.id),
      p.networkName,
      `${p.ipv4}/${p.prefixLength}`,
      p.mac,
      p.securityGroups.map((g) => g.name).join(',') || '(none)',
      spoofDrops(p),
      p.counters ? String(p.counters.ingressDenied) : '-',
    ]),
    color,
  );
}

function portsPath(vm: string): string {
  return `/v1/vms/${encodeURIComponent(vm)}/ports`;
}

/** `rampart vm ports` and `rampart vm port-groups`, registered under `vm` by ./vm.ts. */
export function registerVmPortCommands(vm: Command, deps: CommandDeps): void {
  vm.command('ports')
    .description(
      "list a VM's network ports: address, MAC, security groups and live counters " +
        '(- when the VM is not running on a connected host)',
    )
    .argument('<vm>', 'VM name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: Port[] }>('GET', portsPath(ref));
      if (ctx.out.json) ctx.out.printJson(list);
      else if (list.items.length === 0) ctx.out.print(`vm ${ref} has no network ports`);
      else ctx.out.print(portTable(list.items, ctx.out.color));
    });

  vm.command('port-groups')
    .description(
      "set the security groups of a VM's port, replacing its current ones (their rules add up); " +
        'applied at once',
    )
    .argument('<vm>', 'VM name or id', parseRef)
    .argument('<port-id>', 'the port id or a unique prefix of it (as `vm ports` shows it)', parseIdPrefix)
    .argument('<group...>', `security group names or ids (at most ${PORT_GROUPS_MAX})`, collectGroups)
    .action(async (ref: string, portRef: string, groups: string[], _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      let portId = portRef;
      if (!isUuid(portRef)) {
        const list = await ctx.client.request<{ items: Port[] }>('GET', portsPath(ref));
        portId = pickByIdPrefix(list.items, portRef, 'port').id;
      }
      const updated = await ctx.client.request<Port>(
        'PUT',
        `${portsPath(ref)}/${encodeURIComponent(portId)}/security-groups`,
        { body: { securityGroups: groups } },
      );
      if (ctx.out.json) ctx.out.printJson(updated);
      else
        ctx.out.print(
          `vm ${ref} port ${shortId(updated.id)}: security groups ${updated.securityGroups.map((g) => g.name).join(', ') || '(none)'}`,
        );
    });
}
