/**
 * `rampart host ...`: the hypervisor hosts. Tables show 8-character ids, so `host show` also takes an
 * id prefix or a hostname and resolves it from the host list.
 */
import type { Command } from 'commander';
import type { Host } from '../../api/host.js';
import type { ApiClient } from '../api-client.js';
import type { CommandDeps } from '../context.js';
import { LocalNotFoundError, UsageError } from '../errors.js';
import { isUuid, parseHostRef, parseOnOff } from '../validation.js';
import { hostDetails, hostTable } from '../views.js';

/** Finds a host by full id (one GET), or by unique id prefix or exact hostname (from the list). */
export async function findHost(client: ApiClient, ref: string): Promise<Host> {
  const id = ref.toLowerCase();
  if (isUuid(id)) return client.getHost(id);
  const { items } = await client.listHosts();
  const byName = items.filter((host) => host.hostname === ref);
  const matches = byName.length > 0 ? byName : items.filter((host) => host.id.startsWith(id));
  const [first, second] = matches;
  if (!first) throw new LocalNotFoundError(`host ${JSON.stringify(ref)} not found`);
  if (second) {
    throw new UsageError(
      `host ${JSON.stringify(ref)} is ambiguous (${matches.length} hosts match); give more of the id`,
    );
  }
  return first;
}

export function registerHostCommands(program: Command, deps: CommandDeps): void {
  const host = program.command('host').description('list and inspect hypervisor hosts');

  host
    .command('list')
    .alias('ls')
    .description('list hosts with their capacity and what is allocated on them')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listHosts();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(hostTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  host
    .command('show')
    .description('show a host in detail')
    .argument('<id>', 'host id, unique id prefix (as in `host list`) or hostname', parseHostRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await findHost(ctx.client, ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(hostDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  host
    .command('maintenance')
    .description('put a host into maintenance (no new VMs; running ones stay) or take it out')
    .argument('<id>', 'host id, unique id prefix (as in `host list`) or hostname', parseHostRef)
    .argument('<on|off>', 'on: no new VMs are placed on the host', parseOnOff)
    .action(async (ref: string, on: boolean, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await findHost(ctx.client, ref);
      const updated = await ctx.client.request<Host>('PATCH', `/v1/hosts/${found.id}`, {
        body: { maintenance: on },
        tenant: false,
      });
      if (ctx.out.json) ctx.out.printJson(updated);
      else ctx.out.print(`host ${updated.hostname}: maintenance ${updated.maintenance ? 'on' : 'off'}`);
    });
}
