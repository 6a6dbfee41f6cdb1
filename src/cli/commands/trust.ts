/**
 * `rampart trust ...`: the public keys the tenant trusts to sign images, and its image trust policy
 * (tenant admins change them, from a logged-in session: API tokens are refused).
 */
import type { Command } from 'commander';
import type { TrustPolicy, TrustPolicyUpdate } from '../../api/trust.js';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { formatAge, formatKeyValue, formatTable } from '../output.js';
import { readSmallFile } from './image-sign.js';
import { parseName, parseOnOff, parsePath, parseRef } from '../validation.js';
import { resolveMemberTenant } from './member.js';

const MAX_PUBLIC_KEY_FILE_BYTES = 4096;

function onOff(value: boolean): string {
  return value ? 'on' : 'off';
}

function policyDetails(tenant: string, policy: TrustPolicy): string {
  return formatKeyValue([
    ['Tenant', tenant],
    ['Require signatures', onOff(policy.requireSignatures)],
    ['Accept platform images', onOff(policy.acceptPlatformImages)],
    ['Updated', policy.updatedAt ?? '- (defaults)'],
  ]);
}

export function registerTrustCommands(program: Command, deps: CommandDeps): void {
  const trust = program
    .command('trust')
    .description('the keys the tenant trusts to sign images, and its image trust policy');

  const key = trust.command('key').description('trusted image-signing keys (Ed25519 public keys)');

  key
    .command('add')
    .description('trust an Ed25519 public key (SPKI PEM, e.g. from `rampart image keygen`)')
    .argument('<name>', 'a name for the key', parseName)
    .requiredOption('--pub <file>', 'the public key file', parsePath)
    .action(async (name: string, opts: { pub: string }, cmd: Command) => {
      const pem = readSmallFile(opts.pub, MAX_PUBLIC_KEY_FILE_BYTES).toString('utf8');
      const ctx = deps.context(cmd);
      const added = await ctx.client.addTrustedKey(name, pem);
      if (ctx.out.json) ctx.out.printJson(added);
      else
        ctx.out.print(
          formatKeyValue(
            [
              ['Name', added.name],
              ['ID', added.id],
              ['Key ID', added.keyid],
            ],
            ctx.out.color,
          ),
        );
    });

  key
    .command('list')
    .alias('ls')
    .description('list the trusted keys')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listTrustedKeys();
      if (ctx.out.json) ctx.out.printJson(list);
      else
        ctx.out.print(
          formatTable(
            ['NAME', 'ID', 'KEYID', 'AGE'],
            list.items.map((k) => [k.name, k.id, k.keyid, formatAge(k.createdAt, ctx.now())]),
            ctx.out.color,
          ),
        );
    });

  key
    .command('remove')
    .alias('rm')
    .description('stop trusting a key (images it signed are no longer trusted through it)')
    .argument('<id>', 'the trusted key id', parseRef)
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.deleteTrustedKey(id);
      if (!ctx.out.json) ctx.out.print(`trusted key ${id} removed`);
    });

  const policy = trust.command('policy').description("the tenant's image trust policy");

  policy
    .command('show')
    .description('show the trust policy')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const tenant = await resolveMemberTenant(ctx);
      const found = await ctx.client.getTrustPolicy(tenant);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(policyDetails(tenant, found));
    });

  policy
    .command('set')
    .description('change the trust policy (tenant admins; turning signatures off is audited)')
    .option('--require-signatures <on|off>', 'images need a signature by a trusted key', parseOnOff)
    .option(
      '--accept-platform-images <on|off>',
      'accept platform-published images without a tenant-trusted signature',
      parseOnOff,
    )
    .action(async (opts: { requireSignatures?: boolean; acceptPlatformImages?: boolean }, cmd: Command) => {
      const update: TrustPolicyUpdate = {};
      if (opts.requireSignatures !== undefined) update.requireSignatures = opts.requireSignatures;
      if (opts.acceptPlatformImages !== undefined) update.acceptPlatformImages = opts.acceptPlatformImages;
      if (Object.keys(update).length === 0)
        throw new UsageError('give --require-signatures and/or --accept-platform-images');
      const ctx = deps.context(cmd);
      const tenant = await resolveMemberTenant(ctx);
      const updated = await ctx.client.updateTrustPolicy(tenant, update);
      if (ctx.out.json) ctx.out.printJson(updated);
      else ctx.out.print(policyDetails(tenant, updated));
    });
}
