/**
 * Role bindings. `rampart member ...`: who holds which role in a tenant (--tenant, else your default
 * tenant, found through whoami). `rampart platform-member ...`: platform-wide roles, which apply in every
 * tenant.
 */
import type { Command } from 'commander';
import type { CliContext, CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { parseName, parseUsername } from '../validation.js';
import { memberTable } from '../views.js';

/** The tenant to act in: --tenant / RAMPART_TENANT, else the one the server picks for the caller. */
export async function resolveMemberTenant(ctx: CliContext): Promise<string> {
  if (ctx.tenant !== undefined) return ctx.tenant;
  const me = await ctx.client.whoami();
  if (me.tenant) return me.tenant.name;
  const names = me.tenants.map((m) => m.tenant.name);
  throw new UsageError(
    names.length === 0
      ? 'you are a member of no tenant: choose one with --tenant <name>'
      : `choose the tenant with --tenant <name> (you are a member of ${names.join(', ')})`,
  );
}

export function registerMemberCommands(program: Command, deps: CommandDeps): void {
  const member = program
    .command('member')
    .description(
      "manage a tenant's members and their roles (the tenant: --tenant, else your only tenant); " +
        'platform-wide roles: see `platform-member`',
    );

  member
    .command('list')
    .alias('ls')
    .description('list the members of the tenant and their roles')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const tenant = await resolveMemberTenant(ctx);
      const list = await ctx.client.listMembers(tenant);
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(memberTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  member
    .command('add')
    .description('give a user a role in the tenant (you must hold every permission of that role)')
    .argument('<user>', 'username or user id', parseUsername)
    .argument('<role>', 'role name (see `rampart role list`)', parseName)
    .action(async (user: string, role: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const tenant = await resolveMemberTenant(ctx);
      const added = await ctx.client.addMember(tenant, user, role);
      if (ctx.out.json) ctx.out.printJson(added);
      else
        ctx.out.print(
          `${added.user.username} is now ${role} in tenant ${tenant} (roles: ${added.roles.join(', ')})`,
        );
    });

  member
    .command('remove')
    .alias('rm')
    .description("remove a user's role (--role), or all of their roles, from the tenant")
    .argument('<user>', 'username or user id', parseUsername)
    .option('--role <role>', 'remove only this role', parseName)
    .action(async (user: string, opts: { role?: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const tenant = await resolveMemberTenant(ctx);
      await ctx.client.removeMember(tenant, user, opts.role);
      if (ctx.out.json) ctx.out.printJson({ tenant, user, removed: opts.role ?? 'all roles' });
      else
        ctx.out.print(
          `removed ${opts.role ? `role ${opts.role}` : 'all roles'} of ${user} in tenant ${tenant}`,
        );
    });

  const platform = program
    .command('platform-member')
    .description('manage platform-wide roles (e.g. platform-admin, auditor): they apply in every tenant');

  platform
    .command('list')
    .alias('ls')
    .description('list platform-wide role bindings')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listPlatformMembers();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(memberTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  platform
    .command('add')
    .description('give a user a built-in role platform-wide')
    .argument('<user>', 'username or user id', parseUsername)
    .argument('<role>', 'built-in role name', parseName)
    .action(async (user: string, role: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const added = await ctx.client.addPlatformMember(user, role);
      if (ctx.out.json) ctx.out.printJson(added);
      else
        ctx.out.print(
          `${added.user.username} is now ${role} platform-wide (roles: ${added.roles.join(', ')})`,
        );
    });

  platform
    .command('remove')
    .alias('rm')
    .description(
      "remove a user's platform-wide role (--role), or all of them (the last platform admin stays)",
    )
    .argument('<user>', 'username or user id', parseUsername)
    .option('--role <role>', 'remove only this role', parseName)
    .action(async (user: string, opts: { role?: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.removePlatformMember(user, opts.role);
      if (ctx.out.json) ctx.out.printJson({ user, removed: opts.role ?? 'all roles' });
      else
        ctx.out.print(
          `removed ${opts.role ? `platform role ${opts.role}` : 'all platform roles'} of ${user}`,
        );
    });
}
