/**
 * `rampart secgroup ...`: the tenant's security groups and their rules. A port's groups add up; a group
 * without rules allows nothing (the `default` group, always there, allows all egress and no ingress).
 * Rule options are checked here before anything is sent: ports only for tcp/udp, a range as a-b with
 * a <= b, one port option and one remote option at most.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { SecurityGroup, SecurityGroupRule, SecurityGroupRuleCreate } from '../../api/network.js';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { formatAge, formatKeyValue, formatTable, truncate } from '../output.js';
import { integerIn, isUuid, parseName, parseRef } from '../validation.js';
import {
  DESCRIPTION_MAX_LENGTH,
  descriptionOf,
  parseCidr,
  parseIdPrefix,
  pickByIdPrefix,
} from './network.js';

/** src/api/network.ts RuleDirection and RuleProtocol. */
export const RULE_DIRECTIONS = ['ingress', 'egress'] as const;
export const RULE_PROTOCOLS = ['tcp', 'udp', 'icmp', 'any'] as const;
/** src/api/network.ts SecurityGroupRuleCreate.description. */
export const RULE_DESCRIPTION_MAX_LENGTH = 255;
export const PORT_MIN = 1;
export const PORT_MAX = 65_535;

type Direction = (typeof RULE_DIRECTIONS)[number];
type Protocol = (typeof RULE_PROTOCOLS)[number];

export interface PortRange {
  min: number;
  max: number;
}

/** One port, 1-65535. */
export const parsePort = integerIn(PORT_MIN, PORT_MAX);

/** A port range `a-b` (1-65535, a <= b); a single port `a` is the range a-a. */
export function parsePortRange(value: string): PortRange {
  const match = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(value);
  const min = match ? Number(match[1]) : Number.NaN;
  const max = match ? Number(match[2] ?? match[1]) : Number.NaN;
  if (!(min >= PORT_MIN && max <= PORT_MAX && min <= max)) {
    throw new InvalidArgumentError(
      `Expected a port range such as 8000-8080 (ports ${PORT_MIN}-${PORT_MAX}, the first not above the last).`,
    );
  }
  return { min, max };
}

export interface RuleFlags {
  direction: Direction;
  protocol: Protocol;
  port?: number;
  ports?: PortRange;
  remoteCidr?: string;
  remoteGroup?: string;
  description?: string;
}

/** The API body for `rule add`, or a usage error for options that do not go together. */
export function ruleBody(flags: RuleFlags): SecurityGroupRuleCreate {
  if (flags.port !== undefined && flags.ports !== undefined)
    throw new UsageError('give --port or --ports, not both');
  const range = flags.port !== undefined ? { min: flags.port, max: flags.port } : flags.ports;
  if (range && flags.protocol !== 'tcp' && flags.protocol !== 'udp')
    throw new UsageError(`ports apply to tcp and udp rules only, not ${flags.protocol}`);
  if (flags.remoteCidr !== undefined && flags.remoteGroup !== undefined)
    throw new UsageError('give --remote-cidr or --remote-group, not both');
  const body: SecurityGroupRuleCreate = { direction: flags.direction, protocol: flags.protocol };
  if (range) {
    body.portMin = range.min;
    body.portMax = range.max;
  }
  if (flags.remoteCidr !== undefined) body.remoteCidr = flags.remoteCidr;
  if (flags.remoteGroup !== undefined) body.remoteGroup = flags.remoteGroup;
  if (flags.description !== undefined) body.description = flags.description;
  return body;
}

/** `80`, `8000-8080`, `all` (tcp/udp without ports) or `-` (icmp, any). */
export function formatPorts(rule: Pick<SecurityGroupRule, 'protocol' | 'portMin' | 'portMax'>): string {
  if (rule.portMin === null || rule.portMax === null)
    return rule.protocol === 'tcp' || rule.protocol === 'udp' ? 'all' : '-';
  return rule.portMin === rule.portMax ? String(rule.portMin) : `${rule.portMin}-${rule.portMax}`;
}

/** A CIDR, or `group:<name>` (the group's id when its name is not known). */
export function formatRemote(
  rule: Pick<SecurityGroupRule, 'remoteCidr' | 'remoteGroupId'>,
  groupNames: ReadonlyMap<string, string>,
): string {
  if (rule.remoteGroupId !== null) return `group:${groupNames.get(rule.remoteGroupId) ?? rule.remoteGroupId}`;
  return rule.remoteCidr ?? '-';
}

export function ruleTable(
  rules: readonly SecurityGroupRule[],
  groupNames: ReadonlyMap<string, string>,
  color = false,
): string {
  return formatTable(
    ['ID', 'DIRECTION', 'PROTOCOL', 'PORTS', 'REMOTE', 'DESCRIPTION'],
    rules.map((r) => [
      r.id,
      r.direction,
      r.protocol,
      formatPorts(r),
      formatRemote(r, groupNames),
      truncate(r.description, 40),
    ]),
    color,
  );
}

export function groupTable(groups: readonly SecurityGroup[], nowMs: number, color = false): string {
  return formatTable(
    ['NAME', 'RULES', 'DESCRIPTION', 'AGE'],
    groups.map((g) => [
      g.name,
      String(g.rules.length),
      truncate(g.description, 60),
      formatAge(g.createdAt, nowMs),
    ]),
    color,
  );
}

function groupPath(ref: string): string {
  return `/v1/security-groups/${encodeURIComponent(ref)}`;
}

export function registerSecgroupCommands(program: Command, deps: CommandDeps): void {
  const secgroup = program
    .command('secgroup')
    .description(
      "security groups: firewall rules for VM ports (a port's groups add up; `default` allows all egress, no ingress)",
    );

  secgroup
    .command('list')
    .alias('ls')
    .description("list the tenant's security groups")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: SecurityGroup[] }>('GET', '/v1/security-groups');
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(groupTable(list.items, ctx.now(), ctx.out.color));
    });

  secgroup
    .command('create')
    .description('create a security group; it allows nothing until rules are added')
    .argument('<name>', 'group name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .option('--description <text>', 'a free-form description', descriptionOf(DESCRIPTION_MAX_LENGTH))
    .action(async (name: string, opts: { description?: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const body: { name: string; description?: string } = { name };
      if (opts.description !== undefined) body.description = opts.description;
      const created = await ctx.client.request<SecurityGroup>('POST', '/v1/security-groups', { body });
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`security group ${created.name}: created (no rules: it allows nothing yet)`);
    });

  secgroup
    .command('show')
    .description('show a security group and its rules')
    .argument('<ref>', 'group name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const group = await ctx.client.request<SecurityGroup>('GET', groupPath(ref));
      if (ctx.out.json) {
        ctx.out.printJson(group);
        return;
      }
      const names = new Map([[group.id, group.name]]);
      if (group.rules.some((r) => r.remoteGroupId !== null && !names.has(r.remoteGroupId))) {
        const all = await ctx.client.request<{ items: SecurityGroup[] }>('GET', '/v1/security-groups');
        for (const g of all.items) names.set(g.id, g.name);
      }
      const details = formatKeyValue(
        [
          ['Name', group.name],
          ['ID', group.id],
          ['Description', group.description || '-'],
          ['Created', `${group.createdAt} (${formatAge(group.createdAt, ctx.now())} ago)`],
          ['Rules', String(group.rules.length)],
        ],
        ctx.out.color,
      );
      const rules =
        group.rules.length > 0
          ? ruleTable(group.rules, names, ctx.out.color)
          : '(no rules: the group allows nothing)\n';
      ctx.out.print(`${details}\n${rules}`);
    });

  secgroup
    .command('delete')
    .alias('rm')
    .description('delete a security group that no port carries and no rule refers to')
    .argument('<ref>', 'group name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.request<unknown>('DELETE', groupPath(ref));
      if (!ctx.out.json) ctx.out.print(`security group ${ref}: deleted`);
    });

  const rule = secgroup.command('rule').description("add and delete a security group's rules");

  rule
    .command('add')
    .description(
      'add a rule to a group; it applies at once on every host. Without --port/--ports a tcp/udp rule ' +
        'covers every port; without --remote-cidr/--remote-group the remote is 0.0.0.0/0',
    )
    .argument('<group>', 'group name or id', parseRef)
    .addOption(
      new Option('--direction <direction>', 'ingress (to the VM) or egress (from the VM)')
        .choices(RULE_DIRECTIONS)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--protocol <protocol>', 'the protocol').choices(RULE_PROTOCOLS).makeOptionMandatory(),
    )
    .option('--port <port>', `one port, ${PORT_MIN}-${PORT_MAX} (tcp and udp only)`, parsePort)
    .option('--ports <range>', 'a port range such as 8000-8080 (tcp and udp only)', parsePortRange)
    .option(
      '--remote-cidr <cidr>',
      'where traffic may come from (ingress) or go to (egress), e.g. 192.168.0.0/16',
      parseCidr,
    )
    .option('--remote-group <group>', 'the members of this group instead of a CIDR (name or id)', parseRef)
    .option('--description <text>', 'a free-form description', descriptionOf(RULE_DESCRIPTION_MAX_LENGTH))
    .action(async (group: string, opts: RuleFlags, cmd: Command) => {
      const body = ruleBody(opts);
      const ctx = deps.context(cmd);
      const added = await ctx.client.request<SecurityGroupRule>('POST', `${groupPath(group)}/rules`, {
        body,
      });
      if (ctx.out.json) {
        ctx.out.printJson(added);
        return;
      }
      const remote =
        added.remoteGroupId !== null ? `group:${opts.remoteGroup ?? added.remoteGroupId}` : added.remoteCidr;
      const ports = added.portMin === null ? '' : `/${formatPorts(added)}`;
      ctx.out.print(
        `rule ${added.id} added to ${group}: ${added.direction} ${added.protocol}${ports} ` +
          `${added.direction === 'ingress' ? 'from' : 'to'} ${remote ?? '-'}`,
      );
    });

  rule
    .command('delete')
    .alias('rm')
    .description('delete a rule; new connections it allowed are refused at once')
    .argument('<group>', 'group name or id', parseRef)
    .argument('<rule-id>', 'the rule id (as `secgroup show` prints it) or a unique prefix', parseIdPrefix)
    .action(async (group: string, ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      let id = ref;
      if (!isUuid(ref)) {
        const found = await ctx.client.request<SecurityGroup>('GET', groupPath(group));
        id = pickByIdPrefix(found.rules, ref, 'rule').id;
      }
      await ctx.client.request<unknown>('DELETE', `${groupPath(group)}/rules/${encodeURIComponent(id)}`);
      if (!ctx.out.json) ctx.out.print(`rule ${id} deleted from ${group}`);
    });
}
