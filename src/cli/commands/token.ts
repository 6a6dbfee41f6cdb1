/**
 * `rampart token ...`: your own API tokens, for automation. Each acts in one tenant (--tenant) with a
 * subset of your permissions there; the secret is shown once, when the token is created.
 */
import type { Command } from 'commander';
import type { ApiClient, ApiTokenCreateBody } from '../api-client.js';
import type { CommandDeps } from '../context.js';
import { LocalNotFoundError, UsageError } from '../errors.js';
import { sanitize } from '../output.js';
import {
  TOKEN_EXPIRY_MAX_DAYS,
  collectPermissions,
  integerIn,
  isUuid,
  parseName,
  parseRef,
} from '../validation.js';
import { tokenTable } from '../views.js';

interface CreateFlags {
  permission?: string[];
  expiresInDays?: number;
}

/** A token by full id (as is), or by unique id prefix or name (from the list). */
export async function findTokenId(client: ApiClient, ref: string): Promise<string> {
  const key = ref.toLowerCase();
  if (isUuid(key)) return key;
  const { items } = await client.listTokens();
  const byName = items.filter((token) => token.name === ref && !token.revoked);
  const matches = byName.length > 0 ? byName : items.filter((token) => token.id.startsWith(key));
  const [first, second] = matches;
  if (!first) throw new LocalNotFoundError(`API token ${JSON.stringify(ref)} not found`);
  if (second) {
    throw new UsageError(
      `API token ${JSON.stringify(ref)} is ambiguous (${matches.length} tokens match); give more of the id`,
    );
  }
  return first.id;
}

export function registerTokenCommands(program: Command, deps: CommandDeps): void {
  const token = program
    .command('token')
    .description('manage your API tokens for automation (each acts in one tenant: --tenant)');

  token
    .command('list')
    .alias('ls')
    .description('list your API tokens (never their secrets)')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listTokens();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(tokenTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  token
    .command('create')
    .description(
      'create an API token in the tenant; prints the secret on stdout, once (it cannot be shown again)',
    )
    .argument('<name>', 'token name: lowercase letters, digits and dashes (a DNS label)', parseName)
    .option(
      '--permission <permission>',
      'limit the token to this permission; repeat (or separate with commas) for more (default: all you hold)',
      collectPermissions,
    )
    .option(
      '--expires-in-days <n>',
      `days until the token expires (1-${TOKEN_EXPIRY_MAX_DAYS}; server default 30)`,
      integerIn(1, TOKEN_EXPIRY_MAX_DAYS),
    )
    .action(async (name: string, opts: CreateFlags, cmd: Command) => {
      const ctx = deps.context(cmd);
      const body: ApiTokenCreateBody = { name };
      if (opts.permission !== undefined) body.permissions = opts.permission;
      if (opts.expiresInDays !== undefined) body.expiresInDays = opts.expiresInDays;
      const created = await ctx.client.createToken(body);
      if (ctx.out.json) {
        ctx.out.printJson(created);
      } else {
        const { apiToken } = created;
        ctx.out.progress(
          `token ${apiToken.name} created (id ${apiToken.id}, tenant ${apiToken.tenant.name}, ` +
            `expires ${apiToken.expiresAt})`,
        );
        // The secret alone on stdout, so that `TOKEN=$(rampart token create ci)` works.
        ctx.out.print(sanitize(created.token));
      }
      ctx.out.progress(
        'rampart: this is the only time the token is shown: store it now (e.g. in a secret manager); ' +
          'use it with RAMPART_TOKEN',
      );
    });

  token
    .command('revoke')
    .alias('rm')
    .description('revoke one of your API tokens')
    .argument('<id>', 'token id, unique id prefix (as in `token list`) or name', parseRef)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const id = await findTokenId(ctx.client, ref);
      await ctx.client.revokeToken(id);
      if (ctx.out.json) ctx.out.printJson({ revoked: id });
      else ctx.out.print(`token ${id} revoked`);
    });
}
