/**
 * `rampart agent`: runs the host agent (it runs QEMU for the server) in the foreground. The agent
 * module is imported only here, so the client commands never load it.
 */
import type { Command } from 'commander';
import type { AgentCliOptions } from '../../agent/main.js';
import type { CommandDeps } from '../context.js';
import { parsePath } from '../validation.js';

/** Flags win over the environment; unset and empty values are left out. */
export function agentOptions(
  flags: AgentCliOptions,
  env: Readonly<Record<string, string | undefined>>,
): AgentCliOptions {
  const options: AgentCliOptions = {};
  const dataDir = flags.dataDir ?? (env.RAMPART_DATA_DIR || undefined);
  const config = flags.config ?? (env.RAMPART_CONFIG || undefined);
  if (dataDir !== undefined) options.dataDir = dataDir;
  if (flags.socket !== undefined) options.socket = flags.socket;
  if (config !== undefined) options.config = config;
  return options;
}

export function registerAgentCommand(program: Command, deps: CommandDeps): void {
  program
    .command('agent')
    .description(
      'run the Rampart host agent in the foreground: it starts, stops and watches the QEMU processes ' +
        'of this host as the server asks, over a unix socket (the server starts one itself in all-in-one mode)',
    )
    .option('--data-dir <dir>', 'directory for VM runtime state (env RAMPART_DATA_DIR)', parsePath)
    .option('--socket <path>', 'unix socket the server connects to', parsePath)
    .option('--config <file>', 'configuration file (env RAMPART_CONFIG)', parsePath)
    .addHelpText(
      'after',
      [
        '',
        'Environment:',
        '  RAMPART_DATA_DIR  data directory, as --data-dir',
        '  RAMPART_CONFIG    configuration file, as --config',
        'Flags take precedence over the environment.',
      ].join('\n'),
    )
    .action(async (flags: AgentCliOptions) => {
      const options = agentOptions(flags, deps.io.env);
      const { runAgent } = await import('../../agent/main.js');
      await runAgent(options);
    });
}
