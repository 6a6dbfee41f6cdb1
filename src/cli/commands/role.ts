/** `rampart role ...`: the built-in roles and the tenant's custom roles (in the request's tenant). */
import type { Command } from 'commander';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { ROLE_DESCRIPTION_MAX_LENGTH, collectPermissions, parseName } from '../validation.js';
import { roleDetails, roleTable } from '../views.js';

export function registerRoleCommands(program: Command, deps: CommandDeps): void {
  const role = program
    .command('role')
    .description("list the built-in roles and manage the tenant's custom roles (the tenant: --tenant)");

  role
    .command('list')
    .alias('ls')
    .description('list the built-in roles and the custom roles of the tenant')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listRoles();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(roleTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  role
    .command('show')
    .description('show a role and its permissions')
    .argument('<name>', 'role name', parseName)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getRole(name);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(roleDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  role
    .command('create')
    .description('create a custom role in the tenant (only with permissions you hold yourself)')
    .argument('<name>', 'role name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .requiredOption(
      '--permission <permission>',
      'a permission such as vm:read; repeat the option (or separate with commas) for more',
      collectPermissions,
    )
    .option(
      '--description <text>',
      `what the role is for (at most ${ROLE_DESCRIPTION_MAX_LENGTH} characters)`,
    )
    .action(async (name: string, opts: { permission: string[]; description?: string }, cmd: Command) => {
      if (opts.description !== undefined && opts.description.length > ROLE_DESCRIPTION_MAX_LENGTH) {
        throw new UsageError(`--description is longer than ${ROLE_DESCRIPTION_MAX_LENGTH} characters`);
      }
      const ctx = deps.context(cmd);
      const created = await ctx.client.createRole({
        name,
        permissions: opts.permission,
        ...(opts.description !== undefined ? { description: opts.description } : {}),
      });
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`role ${created.name} created (${created.permissions.length} permissions)`);
    });

  role
    .command('delete')
    .alias('rm')
    .description('delete a custom role that nobody holds any more')
    .argument('<name>', 'role name', parseName)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.deleteRole(name);
      if (ctx.out.json) ctx.out.printJson({ deleted: name });
      else ctx.out.print(`role ${name} deleted`);
    });
}
