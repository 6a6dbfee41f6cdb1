/**
 * Builds the `rampart` command tree and runs it: global options, the exit-code epilogue, one module per
 * command group, and the mapping of every failure to one stderr line and an exit code.
 */
import { Command, CommanderError, Option } from 'commander';
import { registerAgentCommand } from './commands/agent.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerAuthCommands } from './commands/auth.js';
import { registerFlavorCommands } from './commands/flavor.js';
import { registerHostCommands } from './commands/host.js';
import { registerImageCommands } from './commands/image.js';
import { registerMemberCommands } from './commands/member.js';
import { registerNetworkCommands } from './commands/network.js';
import { registerQuotaCommands } from './commands/quota.js';
import { registerRoleCommands } from './commands/role.js';
import { registerSecgroupCommands } from './commands/secgroup.js';
import { registerSecurityCommands } from './commands/security.js';
import { registerAlertCommands } from './commands/alert.js';
import { registerComplianceCommands } from './commands/compliance.js';
import { registerPlacementGroupCommands } from './commands/placement-group.js';
import { registerVolumeCommands } from './commands/volume.js';
import { registerServerCommand } from './commands/server.js';
import { registerTenantCommands } from './commands/tenant.js';
import { registerTokenCommands } from './commands/token.js';
import { registerTrustCommands } from './commands/trust.js';
import { registerUserCommands } from './commands/user.js';
import { registerVmCommands } from './commands/vm.js';
import { createContext, type CliIo, type CommandDeps, type GlobalOptions } from './context.js';
import { DEFAULT_URL } from './api-client.js';
import { exitCodeFor, formatError } from './errors.js';
import { EXIT_CODES_HELP, exitCodeForCommander, type ExitCode } from './exit-codes.js';
import { OUTPUT_FORMATS } from './output.js';
import { parseTenant } from './validation.js';
import { cliVersion } from './version.js';

const EPILOGUE = [
  '',
  'Credentials:',
  '  `rampart login` stores a session (renewed automatically) for the server URL it logged in to;',
  '  an API token (--token or RAMPART_TOKEN, e.g. from `rampart token create`) takes precedence.',
  '',
  'Environment:',
  `  RAMPART_URL     server URL, as --url (default ${DEFAULT_URL})`,
  '  RAMPART_TOKEN   API token, as --token (preferred: arguments are visible to other local users)',
  "  RAMPART_TENANT  tenant to act in, as --tenant (default: the caller's only tenant)",
  '  RAMPART_SESSION_FILE  where `rampart login` stores the session',
  '                  (default $XDG_CONFIG_HOME/rampart/session.json, else ~/.config/rampart/session.json)',
  '  RAMPART_LISTEN, RAMPART_DATA_DIR, RAMPART_CONFIG   see `rampart server --help` and `rampart agent --help`',
  '',
  EXIT_CODES_HELP,
].join('\n');

export function buildProgram(io: CliIo, secrets: string[] = []): Command {
  const program = new Command('rampart');
  program
    .description('Rampart: a security-first virtual machine manager')
    .version(cliVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .addOption(
      new Option('-o, --output <format>', 'output format; json prints the API answer for scripts')
        .choices(OUTPUT_FORMATS)
        .default('table'),
    )
    .option('--url <url>', `server URL (env RAMPART_URL, default ${DEFAULT_URL})`)
    .option('--token <token>', 'API token (env RAMPART_TOKEN, preferred); overrides the stored session')
    .option(
      '--tenant <name>',
      "tenant to act in (env RAMPART_TENANT; default: the caller's only tenant)",
      parseTenant,
    )
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      getOutHelpWidth: () => (io.stdout.isTTY ? io.stdout.columns : undefined) ?? 100,
      getErrHelpWidth: () => (io.stderr.isTTY ? io.stderr.columns : undefined) ?? 100,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      // Commander's "error: ..." becomes the CLI's single "rampart: ..." line.
      outputError: (text, write) => write(`rampart: ${text.replace(/^error: /, '')}`),
    })
    .addHelpText('after', EPILOGUE);

  const deps: CommandDeps = {
    io,
    context: (cmd) =>
      createContext(cmd.optsWithGlobals<GlobalOptions>(), io, (secret) => {
        secrets.push(secret);
      }),
  };
  registerAuthCommands(program, deps);
  registerVmCommands(program, deps);
  registerImageCommands(program, deps);
  registerNetworkCommands(program, deps);
  registerSecgroupCommands(program, deps);
  registerTrustCommands(program, deps);
  registerFlavorCommands(program, deps);
  registerHostCommands(program, deps);
  registerTenantCommands(program, deps);
  registerQuotaCommands(program, deps);
  registerUserCommands(program, deps);
  registerMemberCommands(program, deps);
  registerRoleCommands(program, deps);
  registerTokenCommands(program, deps);
  registerAuditCommands(program, deps);
  registerSecurityCommands(program, deps);
  registerAlertCommands(program, deps);
  registerComplianceCommands(program, deps);
  registerPlacementGroupCommands(program, deps);
  registerVolumeCommands(program, deps);
  registerServerCommand(program, deps);
  registerAgentCommand(program, deps);
  return program;
}

/** Runs the CLI on the user's arguments (without node and the script) and returns the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const secrets: string[] = [];
  const program = buildProgram(io, secrets);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // Parse failures were already reported by Commander (through outputError above).
    if (err instanceof CommanderError) return exitCodeForCommander(err.code, err.exitCode);
    io.stderr.write(`${formatError(err, secrets)}\n`);
    return exitCodeFor(err);
  }
}
