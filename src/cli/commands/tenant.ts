/** `rampart tenant ...`: tenants (platform admins create and delete them; tenant admins set their policy). */
import type { Command } from 'commander';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { parseName, parseOnOff, parseTenant } from '../validation.js';
import { tenantDetails, tenantTable } from '../views.js';

interface TenantSetFlags {
  requireMfa?: boolean;
  nestedVirtualization?: boolean;
  dedicatedHosts?: boolean;
  clones?: boolean;
}

export function registerTenantCommands(program: Command, deps: CommandDeps): void {
  const tenant = program
    .command('tenant')
    .description('list, inspect, create and delete tenants, and set their policy');

  tenant
    .command('list')
    .alias('ls')
    .description('list tenants: all of them for platform admins, otherwise the ones you belong to')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listTenants();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(tenantTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  tenant
    .command('show')
    .description('show a tenant in detail')
    .argument('<name>', 'tenant name or id', parseTenant)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getTenant(name);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(tenantDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  tenant
    .command('create')
    .description('create a tenant (platform admins)')
    .argument('<name>', 'tenant name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .option('--require-mfa', 'require MFA of the tenant admins')
    .action(async (name: string, opts: { requireMfa?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const created = await ctx.client.createTenant(
        opts.requireMfa ? { name, requireMfaForAdmins: true } : { name },
      );
      if (ctx.out.json) ctx.out.printJson(created);
      else ctx.out.print(`tenant ${created.name} created (${created.id})`);
    });

  tenant
    .command('set')
    .description("change a tenant's policy")
    .argument('<name>', 'tenant name or id', parseTenant)
    .option('--require-mfa <on|off>', 'require MFA of the tenant admins', parseOnOff)
    .option(
      '--dedicated-hosts <on|off>',
      "the tenant's VMs never share a host with another tenant's (platform admins only)",
      parseOnOff,
    )
    .option(
      '--nested-virtualization <on|off>',
      "let the tenant's guests run hypervisors (on: platform admins only)",
      parseOnOff,
    )
    .option('--clones <on|off>', 'whether volumes may be cloned from snapshots in the tenant', parseOnOff)
    .action(async (name: string, opts: TenantSetFlags, cmd: Command) => {
      if (
        opts.requireMfa === undefined &&
        opts.nestedVirtualization === undefined &&
        opts.dedicatedHosts === undefined &&
        opts.clones === undefined
      )
        throw new UsageError(
          'nothing to change: give --require-mfa, --dedicated-hosts, --nested-virtualization or --clones',
        );
      const ctx = deps.context(cmd);
      const updated = await ctx.client.updateTenant(name, {
        ...(opts.requireMfa !== undefined ? { requireMfaForAdmins: opts.requireMfa } : {}),
        ...(opts.dedicatedHosts !== undefined ? { dedicatedHosts: opts.dedicatedHosts } : {}),
        ...(opts.clones !== undefined ? { allowClones: opts.clones } : {}),
        ...(opts.nestedVirtualization !== undefined
          ? { allowNestedVirtualization: opts.nestedVirtualization }
          : {}),
      });
      if (ctx.out.json) ctx.out.printJson(updated);
      else
        ctx.out.print(
          `tenant ${updated.name}: MFA for admins ${updated.requireMfaForAdmins ? 'required' : 'not required'}, ` +
            `dedicated hosts ${updated.dedicatedHosts ? 'on' : 'off'}, ` +
            `nested virtualization ${updated.allowNestedVirtualization ? 'allowed' : 'off'}, ` +
            `clones ${updated.allowClones ? 'allowed' : 'forbidden'}`,
        );
    });

  tenant
    .command('delete')
    .alias('rm')
    .description(
      'delete a tenant with no VMs left; its roles, members and API tokens go with it (platform admins)',
    )
    .argument('<name>', 'tenant name or id', parseTenant)
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.deleteTenant(name);
      if (ctx.out.json) ctx.out.printJson({ deleted: name });
      else ctx.out.print(`tenant ${name} deleted`);
    });
}
