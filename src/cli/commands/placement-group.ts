/**
 * `rampart placement-group list|create|show|delete`: a tenant's affinity (one host) and anti-affinity
 * (different hosts) groups; VMs join with `rampart vm create ... --placement-group <group>`.
 */
import { Option, type Command } from 'commander';
import type { PlacementGroup } from '../../api/placement.js';
import type { CommandDeps } from '../context.js';
import { formatAge, formatKeyValue, formatTable, shortId } from '../output.js';
import { parseName, parseRef } from '../validation.js';

export function placementGroupTable(groups: readonly PlacementGroup[], nowMs: number, color = false): string {
  return formatTable(
    ['NAME', 'POLICY', 'MEMBERS', 'AGE'],
    groups.map((g) => [g.name, g.policy, String(g.members.length), formatAge(g.createdAt, nowMs)]),
    color,
  );
}

export function placementGroupDetails(group: PlacementGroup, color = false): string {
  return formatKeyValue(
    [
      ['Name', group.name],
      ['ID', group.id],
      ['Policy', group.policy],
      [
        'Members',
        group.members.map((m) => `${m.name} (host ${m.hostId ? shortId(m.hostId) : '-'})`).join(', ') || '-',
      ],
    ],
    color,
  );
}

export function registerPlacementGroupCommands(program: Command, deps: CommandDeps): void {
  const group = program
    .command('placement-group')
    .description('affinity (one host) and anti-affinity (different hosts) groups of VMs');

  group
    .command('list')
    .alias('ls')
    .description("list the tenant's placement groups")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.request<{ items: PlacementGroup[] }>('GET', '/v1/placement-groups');
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(placementGroupTable(list.items, ctx.now(), ctx.out.color));
    });

  group
    .command('create')
    .description('create a placement group')
    .argument('<name>', 'group name (a DNS label)', parseName)
    .addOption(
      new Option('--policy <policy>', 'affinity: one host; anti-affinity: different hosts')
        .choices(['affinity', 'anti-affinity'])
        .makeOptionMandatory(),
    )
    .action(async (name: string, opts: { policy: PlacementGroup['policy'] }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.request<PlacementGroup>('POST', '/v1/placement-groups', {
        body: { name, policy: opts.policy },
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`placement group ${created.name} (${created.policy}) created`);
    });

  group
    .command('show')
    .description('show a placement group and its members')
    .argument('<ref>', 'group name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.request<PlacementGroup>(
        'GET',
        `/v1/placement-groups/${encodeURIComponent(ref)}`,
      );
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(placementGroupDetails(found, ctx.out.color));
    });

  group
    .command('delete')
    .alias('rm')
    .description('delete a placement group without members')
    .argument('<ref>', 'group name or id', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.request('DELETE', `/v1/placement-groups/${encodeURIComponent(ref)}`);
      if (!ctx.out.json) ctx.out.print(`placement group ${ref} deleted`);
    });
}
