/**
 * `rampart quota ...`: a tenant's limits and usage (members read them; platform admins change them).
 * The resource names come from src/api/quota.ts, imported only by `quota set` so that the other
 * commands do not load typebox.
 */
import type { Command } from 'commander';
import type { QuotaUpdate } from '../../api/quota.js';
import type { CommandDeps } from '../context.js';
import { ApiError, UsageError } from '../errors.js';
import { parseTenant } from '../validation.js';
import { formatQuotaLimit, quotaTable } from '../views.js';
import { resolveMemberTenant } from './member.js';

/** `vms=3`: an integer, -1 or `unlimited` (no limit), or `default` (back to the platform default). */
export function parseQuotaAssignments(
  assignments: readonly string[],
  resources: readonly string[],
  max: number,
): QuotaUpdate {
  const update: Record<string, number | null> = {};
  const byLowerCase = new Map(resources.map((name) => [name.toLowerCase(), name]));
  for (const assignment of assignments) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(assignment);
    if (!match) {
      throw new UsageError(`expected <resource>=<value>, e.g. vms=10, not ${JSON.stringify(assignment)}`);
    }
    const [, given = '', text = ''] = match;
    const resource = byLowerCase.get(given.toLowerCase());
    if (resource === undefined) {
      throw new UsageError(
        `unknown quota resource ${JSON.stringify(given)} (known: ${resources.join(', ')})`,
      );
    }
    if (resource in update) throw new UsageError(`${resource} is given more than once`);
    const value = text.toLowerCase();
    if (value === 'default') update[resource] = null;
    else if (value === 'unlimited' || value === '-1') update[resource] = -1;
    else if (/^[0-9]{1,10}$/.test(value) && Number(value) <= max) update[resource] = Number(value);
    else {
      throw new UsageError(
        `${resource}: expected an integer from 0 to ${max}, -1 or unlimited, or default, not ${JSON.stringify(text)}`,
      );
    }
  }
  if (Object.keys(update).length === 0) throw new UsageError('give at least one <resource>=<value>');
  return update;
}

/** A limit below usage was refused: the server's hint names its query parameter, the CLI's is --force. */
function withForceHint(err: unknown): unknown {
  if (!(err instanceof ApiError) || err.code !== 'RAMPART_CONFLICT') return err;
  const message = err.message.includes('?force=true')
    ? err.message.replace('?force=true', '--force')
    : `${err.message}; add --force to set it anyway`;
  return new ApiError(err.status, err.code, message, err.requestId, err.details);
}

export function registerQuotaCommands(program: Command, deps: CommandDeps): void {
  const quota = program
    .command('quota')
    .description("show a tenant's quota (limits and usage); platform admins change it");

  quota
    .command('show')
    .description(
      'show the limit and the usage of every resource (SOURCE: the tenant override or the default)',
    )
    .argument('[tenant]', 'tenant name or id (default: --tenant, else your only tenant)', parseTenant)
    .action(async (tenant: string | undefined, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getQuota(tenant ?? (await resolveMemberTenant(ctx)));
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(quotaTable(found, { now: ctx.now(), color: ctx.out.color }));
    });

  quota
    .command('set')
    .description(
      "change some of a tenant's limits (platform admins); the others stay as they are. " +
        'Values: an integer, -1 or unlimited, or default (back to the platform default)',
    )
    .argument('<tenant>', 'tenant name or id', parseTenant)
    .argument('<resource=value...>', 'e.g. vms=10 vcpus=unlimited memoryMiB=default')
    .option('--force', 'accept limits below current usage (then nothing new is admitted until usage drops)')
    .addHelpText(
      'after',
      '\nResources: the names `rampart quota show` lists (vms, vcpus, memoryMiB, diskGiB, ...).',
    )
    .action(async (tenant: string, assignments: string[], opts: { force?: boolean }, cmd: Command) => {
      const { QUOTA_RESOURCES, QuotaLimit } = await import('../../api/quota.js');
      const max = (QuotaLimit as unknown as { maximum: number }).maximum;
      const update = parseQuotaAssignments(assignments, QUOTA_RESOURCES, max);
      const ctx = deps.context(cmd);
      const updated = await ctx.client
        .updateQuota(tenant, update, opts.force === true)
        .catch((err: unknown) => {
          throw opts.force ? err : withForceHint(err);
        });
      if (ctx.out.json) {
        ctx.out.printJson(updated);
        return;
      }
      const changes = Object.keys(update).map((resource) => {
        const entry = updated.resources[resource as keyof typeof updated.resources];
        return `${resource}=${formatQuotaLimit(entry.limit)}${entry.overridden ? '' : ' (default)'}`;
      });
      ctx.out.print(`quota of tenant ${updated.tenant.name} updated: ${changes.join(', ')}`);
    });
}
