/**
 * `rampart user ...`: user accounts (platform admins). New and reset passwords are read from the
 * terminal (asked twice) or from stdin with `--password-stdin`; the user must change them at their next
 * login unless created with `--no-must-change-password`.
 */
import type { Command } from 'commander';
import type { CliContext, CommandDeps } from '../context.js';
import { readPassword } from '../prompt.js';
import { parseUsername } from '../validation.js';
import { userDetails, userTable } from '../views.js';

async function newPassword(
  ctx: CliContext,
  username: string,
  fromStdin: boolean | undefined,
): Promise<string> {
  const password = await readPassword(
    { stdin: ctx.io.stdin, stderr: ctx.io.stderr },
    {
      fromStdin: fromStdin === true,
      question: `Password for ${username}: `,
      flag: '--password-stdin',
      confirm: true,
    },
  );
  ctx.secret(password);
  return password;
}

export function registerUserCommands(program: Command, deps: CommandDeps): void {
  const user = program
    .command('user')
    .description('manage user accounts (platform admins): create, disable, reset passwords, delete');

  user
    .command('list')
    .alias('ls')
    .description('list users')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const list = await ctx.client.listUsers();
      if (ctx.out.json) ctx.out.printJson(list);
      else ctx.out.print(userTable(list.items, { now: ctx.now(), color: ctx.out.color }));
    });

  user
    .command('show')
    .description('show a user in detail')
    .argument('<username>', 'username or user id', parseUsername)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const found = await ctx.client.getUser(ref);
      if (ctx.out.json) ctx.out.printJson(found);
      else ctx.out.print(userDetails(found, { now: ctx.now(), color: ctx.out.color }));
    });

  user
    .command('create')
    .description(
      'create a user with an initial password (asked for twice, or one line on stdin with ' +
        '--password-stdin); they must change it at their first login',
    )
    .argument(
      '<username>',
      'lowercase letters, digits, dots, dashes and underscores (1-64, starting and ending with a letter or digit)',
      parseUsername,
    )
    .option('--password-stdin', 'read the initial password from stdin (one line)')
    .option('--no-must-change-password', 'do not make the user change the password at the first login')
    .action(
      async (
        username: string,
        opts: { passwordStdin?: boolean; mustChangePassword: boolean },
        cmd: Command,
      ) => {
        const ctx = deps.context(cmd);
        const password = await newPassword(ctx, username, opts.passwordStdin);
        const created = await ctx.client.createUser({
          username,
          password,
          mustChangePassword: opts.mustChangePassword,
        });
        if (ctx.out.json) ctx.out.printJson(created);
        else ctx.out.print(`user ${created.username} created (${created.id})`);
      },
    );

  for (const [action, disabled, description] of [
    ['disable', true, 'disable a user: their sessions and API tokens are revoked at once'],
    ['enable', false, 'enable a disabled user again'],
  ] as const) {
    user
      .command(action)
      .description(description)
      .argument('<username>', 'username or user id', parseUsername)
      .action(async (ref: string, _opts: unknown, cmd: Command) => {
        const ctx = deps.context(cmd);
        const updated = await ctx.client.updateUser(ref, { disabled });
        if (ctx.out.json) ctx.out.printJson(updated);
        else ctx.out.print(`user ${updated.username} ${updated.disabled ? 'disabled' : 'enabled'}`);
      });
  }

  user
    .command('reset-password')
    .description(
      "set a user's password (asked for twice, or one line on stdin with --password-stdin); their " +
        'sessions are revoked and they must change it at their next login',
    )
    .argument('<username>', 'username or user id', parseUsername)
    .option('--password-stdin', 'read the new password from stdin (one line)')
    .action(async (ref: string, opts: { passwordStdin?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const password = await newPassword(ctx, ref, opts.passwordStdin);
      await ctx.client.resetUserPassword(ref, password);
      if (ctx.out.json) ctx.out.printJson({ user: ref, passwordReset: true });
      else ctx.out.print(`password of ${ref} reset; they must change it at their next login`);
    });

  user
    .command('delete')
    .alias('rm')
    .description('delete a user: their sessions, API tokens and roles go too')
    .argument('<username>', 'username or user id', parseUsername)
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      await ctx.client.deleteUser(ref);
      if (ctx.out.json) ctx.out.printJson({ deleted: ref });
      else ctx.out.print(`user ${ref} deleted`);
    });
}
