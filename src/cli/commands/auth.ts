/**
 * Your own identity: `rampart login`, `logout`, `whoami`, `password` and `mfa ...`. Passwords are read
 * from the terminal without echo, or from stdin with `--password-stdin`; never from an argument. The
 * session is stored 0600 (see session.ts); tokens are never printed.
 */
import type { Command } from 'commander';
import type { LoginRequest, SessionTokens } from '../../api/iam.js';
import { ApiClient } from '../api-client.js';
import type { CliContext, CommandDeps } from '../context.js';
import { SessionAuth } from '../credentials.js';
import { ApiError, AuthError, GeneralError, UnreachableError, UsageError } from '../errors.js';
import { sanitize, formatKeyValue } from '../output.js';
import {
  canPrompt,
  promptLine,
  promptNewPassword,
  promptSecret,
  readPassword,
  readStdinLines,
  type PromptIo,
} from '../prompt.js';
import { deleteSession, readSession, sessionFromTokens, writeSession } from '../session.js';
import {
  RECOVERY_CODE_PATTERN,
  TOTP_PATTERN,
  USERNAME_PATTERN,
  parseRecoveryCode,
  parseTotp,
  parseUsername,
} from '../validation.js';
import { whoamiDetails } from '../views.js';

interface LoginFlags {
  username?: string;
  passwordStdin?: boolean;
  totp?: string;
  recoveryCode?: string;
}

/** How many times `login` asks again for a new password the server's policy rejected. */
const NEW_PASSWORD_ATTEMPTS = 3;

function promptIo(ctx: CliContext): PromptIo {
  return { stdin: ctx.io.stdin, stderr: ctx.io.stderr };
}

/** What `-o json` prints for a new session: everything but the tokens. */
function sessionSummary(ctx: CliContext, tokens: SessionTokens) {
  return {
    url: ctx.url,
    user: tokens.user,
    restriction: tokens.restriction,
    expiresAt: tokens.expiresAt,
    refreshExpiresAt: tokens.refreshExpiresAt,
    sessionFile: ctx.sessionFile,
  };
}

function storeSession(ctx: CliContext, tokens: SessionTokens): void {
  ctx.secret(tokens.token);
  ctx.secret(tokens.refreshToken);
  writeSession(ctx.sessionFile, sessionFromTokens(ctx.url, tokens));
}

function isSecondFactorRequired(err: unknown): err is ApiError {
  return err instanceof ApiError && err.status === 401 && /TOTP code required/i.test(err.message);
}

function restrictionNotice(restriction: SessionTokens['restriction']): string | undefined {
  if (restriction === 'password-change') {
    return (
      'rampart: you must choose a new password before you can do anything else: run `rampart password` ' +
      '(or `rampart password --stdin` with the current and the new password on two lines)'
    );
  }
  if (restriction === 'mfa-enrolment') {
    return (
      'rampart: an administrator role of yours requires MFA: run `rampart mfa enrol`, add the account ' +
      'to your authenticator app, then `rampart mfa verify <code>`'
    );
  }
  return undefined;
}

/** Logs in, asking for a second factor on a terminal when the account has MFA and none was given. */
async function logIn(ctx: CliContext, body: LoginRequest, interactive: boolean): Promise<SessionTokens> {
  try {
    return await ctx.client.login(body);
  } catch (err) {
    if (!isSecondFactorRequired(err) || body.totp !== undefined || body.recoveryCode !== undefined) throw err;
    if (!interactive) {
      throw new ApiError(
        err.status,
        err.code,
        `${err.message}: pass --totp <code> (or --recovery-code <code>)`,
        err.requestId,
      );
    }
    const code = (
      await promptLine(promptIo(ctx), 'TOTP code (or a recovery code): ', { secret: false })
    ).trim();
    if (new RegExp(TOTP_PATTERN).test(code)) return ctx.client.login({ ...body, totp: code });
    if (new RegExp(RECOVERY_CODE_PATTERN).test(code)) {
      ctx.secret(code);
      return ctx.client.login({ ...body, recoveryCode: code });
    }
    throw new UsageError('expected a 6-digit TOTP code or a recovery code');
  }
}

/** After a login that must change its password first: ask for the new one (on a terminal) and change it. */
async function changeInitialPassword(
  ctx: CliContext,
  restricted: SessionTokens,
  currentPassword: string,
): Promise<SessionTokens> {
  ctx.out.progress('You must choose a new password before you can do anything else.');
  const client = new ApiClient({ baseUrl: ctx.url, token: restricted.token, userAgent: 'rampart-cli' });
  for (let attempt = 1; ; attempt++) {
    const newPassword = await promptNewPassword(promptIo(ctx));
    ctx.secret(newPassword);
    try {
      return await client.changePassword(currentPassword, newPassword);
    } catch (err) {
      // The password policy said no: say why and ask again.
      if (!(err instanceof ApiError) || err.status !== 400 || attempt >= NEW_PASSWORD_ATTEMPTS) throw err;
      ctx.out.progress(`rampart: ${err.message}`);
    }
  }
}

function loggedInLine(ctx: CliContext, tokens: SessionTokens): string {
  return (
    `logged in to ${ctx.url} as ${tokens.user.username} ` +
    `(session renewed automatically until ${tokens.refreshExpiresAt}; stored in ${ctx.sessionFile})`
  );
}

/** Rethrows a failed logout with a message that says the local session is gone anyway. */
function logoutFailure(err: unknown): Error {
  const what = 'the local session was deleted, but the server did not confirm the logout';
  if (err instanceof ApiError)
    return new ApiError(err.status, err.code, `${what}: ${err.message}`, err.requestId, err.details);
  if (err instanceof UnreachableError) return new UnreachableError(`${what}: ${err.message}`);
  return new GeneralError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
}

export function registerAuthCommands(program: Command, deps: CommandDeps): void {
  program
    .command('login')
    .description(
      'log in with your username and password; the session is stored for the commands that follow ' +
        '(and renewed automatically while it may be)',
    )
    .option('--username <name>', 'your username (asked for on a terminal if omitted)', parseUsername)
    .option('--password-stdin', 'read the password from stdin (one line) instead of asking for it')
    .option('--totp <code>', 'the current code of your authenticator app (accounts with MFA)', parseTotp)
    .option('--recovery-code <code>', 'a one-time recovery code instead of --totp', parseRecoveryCode)
    .addHelpText(
      'after',
      [
        '',
        'The session is stored in $XDG_CONFIG_HOME/rampart/session.json (default',
        '~/.config/rampart/session.json; RAMPART_SESSION_FILE overrides the path), readable only by you.',
        'It is used for the server URL it was made for, unless --token or RAMPART_TOKEN is given.',
        'Example: printf "%s\\n" "$PASSWORD" | rampart login --username alice --password-stdin',
      ].join('\n'),
    )
    .action(async (opts: LoginFlags, cmd: Command) => {
      if (opts.totp !== undefined && opts.recoveryCode !== undefined) {
        throw new UsageError('--totp and --recovery-code do not go together: give one of them');
      }
      const ctx = deps.context(cmd);
      const io = promptIo(ctx);
      // Questions need the terminal; with --password-stdin, stdin carries the password instead.
      const interactive = canPrompt(ctx.io.stdin) && !opts.passwordStdin;
      let username = opts.username;
      if (username === undefined) {
        if (!interactive) {
          throw new UsageError('pass --username: there is no terminal to ask for it on');
        }
        username = (await promptLine(io, 'Username: ', { secret: false })).trim().toLowerCase();
        if (!new RegExp(USERNAME_PATTERN).test(username))
          throw new UsageError('that is not a valid username');
      }
      const password = await readPassword(io, {
        fromStdin: opts.passwordStdin === true,
        question: `Password for ${username}: `,
        flag: '--password-stdin',
      });
      ctx.secret(password);
      const body: LoginRequest = { username, password };
      if (opts.totp !== undefined) body.totp = opts.totp;
      if (opts.recoveryCode !== undefined) {
        ctx.secret(opts.recoveryCode);
        body.recoveryCode = opts.recoveryCode;
      }

      let tokens = await logIn(ctx, body, interactive);
      // Store even a restricted session: it is what `rampart password` or `rampart mfa` go on with.
      storeSession(ctx, tokens);
      if (tokens.restriction === 'password-change' && interactive) {
        tokens = await changeInitialPassword(ctx, tokens, password);
        storeSession(ctx, tokens);
        ctx.out.progress('Password changed.');
      }

      if (ctx.out.json) ctx.out.printJson(sessionSummary(ctx, tokens));
      else ctx.out.print(sanitize(loggedInLine(ctx, tokens)));
      const notice = restrictionNotice(tokens.restriction);
      if (notice) ctx.out.progress(notice);
      if (!ctx.session) {
        ctx.out.progress(
          'rampart: note: an API token (--token or RAMPART_TOKEN) is set; it takes precedence over the session',
        );
      }
    });

  program
    .command('logout')
    .description(
      'end the stored session on the server and delete it here (API tokens are revoked with `token revoke`)',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const path = ctx.sessionFile;
      let stored;
      try {
        stored = readSession(path);
      } catch (err) {
        // A damaged (or unsafe) session file is of no use: remove it.
        deleteSession(path);
        ctx.out.progress(`rampart: ${(err as Error).message}`);
        if (ctx.out.json) ctx.out.printJson({ loggedOut: false, deleted: true, sessionFile: path });
        else ctx.out.print(`deleted the session file ${path}`);
        return;
      }
      if (!stored) {
        if (ctx.out.json) ctx.out.printJson({ loggedOut: false, sessionFile: path });
        else ctx.out.print(`not logged in (no session in ${path})`);
        return;
      }
      // The session is ended where it was made, whatever --url says now.
      const anonymous = new ApiClient({ baseUrl: stored.url, userAgent: 'rampart-cli' });
      const auth = new SessionAuth({
        url: stored.url,
        path,
        now: ctx.now,
        refresh: (refreshToken) => anonymous.refreshSession(refreshToken),
        onSecret: ctx.secret,
      });
      const client = new ApiClient({ baseUrl: stored.url, auth, userAgent: 'rampart-cli' });
      let failure: unknown;
      let alreadyEnded = false;
      try {
        await client.logout();
      } catch (err) {
        if (err instanceof AuthError || (err instanceof ApiError && err.status === 401)) alreadyEnded = true;
        else failure = err;
      }
      deleteSession(path);
      if (failure !== undefined) throw logoutFailure(failure);
      if (ctx.out.json) {
        ctx.out.printJson({ loggedOut: true, url: stored.url, username: stored.username, alreadyEnded });
      } else {
        const suffix = alreadyEnded ? ' (the session had already ended)' : '';
        ctx.out.print(sanitize(`logged out ${stored.username} from ${stored.url}${suffix}`));
      }
    });

  program
    .command('whoami')
    .description('show who you are logged in as: your tenants, roles and what you may do in the tenant')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const me = await ctx.client.whoami();
      if (ctx.out.json) {
        ctx.out.printJson(me);
        return;
      }
      const session = ctx.session?.current();
      const credentials = session
        ? `stored in ${ctx.sessionFile}; renewable until ${session.refreshExpiresAt}`
        : 'from --token or RAMPART_TOKEN';
      ctx.out.print(whoamiDetails(me, credentials, { now: ctx.now(), color: ctx.out.color }));
    });

  program
    .command('password')
    .description(
      'change your password; every other session and API token of yours is revoked and the new ' +
        'session is stored',
    )
    .option('--stdin', 'read the current and the new password from stdin, one per line')
    .action(async (opts: { stdin?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const io = promptIo(ctx);
      let current: string;
      let next: string;
      if (opts.stdin) {
        const lines = await readStdinLines(ctx.io.stdin, ['the current password', 'the new password']);
        current = lines[0] ?? '';
        next = lines[1] ?? '';
      } else if (canPrompt(ctx.io.stdin)) {
        current = await promptSecret(io, 'Current password: ');
        next = await promptNewPassword(io);
      } else {
        throw new UsageError(
          'stdin is not a terminal: pass --stdin and pipe the current and the new password on two lines',
        );
      }
      ctx.secret(current);
      ctx.secret(next);
      const tokens = await ctx.client.changePassword(current, next);
      storeSession(ctx, tokens);
      if (ctx.out.json) {
        ctx.out.printJson(sessionSummary(ctx, tokens));
        return;
      }
      ctx.out.print(
        sanitize(
          `password changed for ${tokens.user.username}; every other session and API token of yours ` +
            `was revoked (new session stored in ${ctx.sessionFile})`,
        ),
      );
      const notice = restrictionNotice(tokens.restriction);
      if (notice) ctx.out.progress(notice);
    });

  const mfa = program
    .command('mfa')
    .description('two-factor authentication (TOTP) of your account: enrol, verify, disable');

  mfa
    .command('enrol')
    .alias('enroll')
    .description(
      'start TOTP enrolment: prints the otpauth:// URI (turn it into a QR code) and the secret for your ' +
        'authenticator app; confirm with `rampart mfa verify <code>`',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const enrolment = await ctx.client.enrolTotp();
      ctx.secret(enrolment.secret);
      if (ctx.out.json) {
        ctx.out.printJson(enrolment);
        return;
      }
      ctx.out.print(
        formatKeyValue([
          ['URI', enrolment.uri],
          ['Secret', enrolment.secret],
        ]),
      );
      ctx.out.progress(
        'Add the account to your authenticator app (scan the URI as a QR code, or type in the secret), ' +
          'then confirm with: rampart mfa verify <code>',
      );
    });

  mfa
    .command('verify')
    .description('confirm TOTP enrolment with a first code; prints your one-time recovery codes (only now)')
    .argument('<code>', 'the current 6-digit code of your authenticator app', parseTotp)
    .action(async (code: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      const result = await ctx.client.verifyTotp(code);
      for (const recovery of result.recoveryCodes) ctx.secret(recovery);
      if (ctx.out.json) {
        ctx.out.printJson(result);
        return;
      }
      ctx.out.progress(
        'MFA is on. Store these recovery codes somewhere safe: they are shown only now, and each one ' +
          'logs you in once in place of a TOTP code (rampart login --recovery-code <code>).',
      );
      ctx.out.print(result.recoveryCodes.map((c) => sanitize(c)).join('\n'));
    });

  mfa
    .command('disable')
    .description('turn TOTP off (needs your password and a current code)')
    .requiredOption('--code <code>', 'the current 6-digit code of your authenticator app', parseTotp)
    .option('--password-stdin', 'read the password from stdin (one line) instead of asking for it')
    .action(async (opts: { code: string; passwordStdin?: boolean }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const password = await readPassword(promptIo(ctx), {
        fromStdin: opts.passwordStdin === true,
        question: 'Password: ',
        flag: '--password-stdin',
      });
      ctx.secret(password);
      await ctx.client.disableTotp(password, opts.code);
      if (ctx.out.json) ctx.out.printJson({ mfaEnabled: false });
      else ctx.out.print('MFA is off');
    });
}
