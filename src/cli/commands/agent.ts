/**
 * `rampart agent`: runs the host agent (it runs QEMU for the server) in the foreground. The agent
 * module is imported only here, so the client commands never load it.
 */
import type { Command } from 'commander';
import type { AgentCliOptions } from '../../agent/main.js';
import type { CommandDeps } from '../context.js';
import { UsageError } from '../errors.js';
import { parseHostName, parseListen, parsePath } from '../validation.js';

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
  if (flags.server !== undefined) options.server = flags.server;
  if (config !== undefined) options.config = config;
  return options;
}

export function registerAgentCommand(program: Command, deps: CommandDeps): void {
  const agent = program
    .command('agent')
    .description(
      'run the Rampart host agent in the foreground: it starts, stops and watches the QEMU processes ' +
        'of this host as the server asks, over a unix socket (the server starts one itself in all-in-one mode), ' +
        'or, once the host has joined (`rampart agent join`), over TLS to the server it dials',
    )
    .option('--data-dir <dir>', 'directory for VM runtime state (env RAMPART_DATA_DIR)', parsePath)
    .option('--socket <path>', 'unix socket the server connects to', parsePath)
    .option(
      '--server <host:port,...>',
      "remote mode: the server replicas' agent listeners to dial in turn (env RAMPART_SERVER; default: those given at join)",
    )
    .option('--config <file>', 'configuration file (env RAMPART_CONFIG)', parsePath)
    .addHelpText(
      'after',
      [
        '',
        'Environment:',
        '  RAMPART_DATA_DIR           data directory, as --data-dir',
        '  RAMPART_CONFIG             configuration file, as --config',
        '  RAMPART_SERVER             server agent listener, as --server (used once the host has joined)',
        '  RAMPART_HEARTBEAT_SECONDS  remote mode heartbeat interval (default 5)',
        "  RAMPART_TUNNEL_IP          this host's IPv4 underlay address for VXLAN (UDP 4789) between hosts;",
        '                             unset: its tenant networks do not span hosts',
        'Flags take precedence over the environment.',
      ].join('\n'),
    )
    .action(async (flags: AgentCliOptions) => {
      if (flags.server !== undefined) parseListen(flags.server);
      const options = agentOptions(flags, deps.io.env);
      const { runAgent } = await import('../../agent/main.js');
      await runAgent(options);
    });

  agent
    .command('join')
    .description(
      'join this host to a server with a one-time join token: makes the host key here (it never leaves ' +
        'the host), has the server sign a host certificate, and stores key (0600), certificate, CA and ' +
        'server endpoint in the data directory; then run `rampart agent` to dial the server',
    )
    .option('--server <url>', "the server's API URL, e.g. https://rampart.example:8480 (required)")
    .option(
      '--token <token>',
      'the join token from `rampart host join-token` (required; or env RAMPART_JOIN_TOKEN, which keeps it out of the process list)',
    )
    .option(
      '--name <name>',
      "this host's name (env RAMPART_HOST_NAME; default: the machine's hostname)",
      parseHostName,
    )
    .option('--data-dir <dir>', 'the agent data directory (env RAMPART_DATA_DIR)', parsePath)
    .option(
      '--ca-fingerprint <sha256:hex>',
      'the host CA fingerprint `rampart host join-token` printed: the CA received is refused unless it matches',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      // `--server`, `--token` and `--data-dir` are also options of `agent` and of the program, which
      // Commander hands them to: read them with the globals.
      const opts = cmd.optsWithGlobals<{
        server?: string;
        token?: string;
        name?: string;
        dataDir?: string;
        caFingerprint?: string;
      }>();
      const server = opts.server;
      if (!server || !/^https?:\/\/[^\s/]+\/?$/.test(server))
        throw new UsageError("--server must be the server's API URL, e.g. https://rampart.example:8480");
      if (opts.caFingerprint !== undefined && !/^sha256:[0-9a-fA-F]{64}$/.test(opts.caFingerprint))
        throw new UsageError('--ca-fingerprint must be sha256:<64 hex digits>');
      if (opts.caFingerprint === undefined && server.startsWith('http://'))
        deps.io.stderr.write(
          'warning: joining over plain http without --ca-fingerprint: the CA received is trusted as it comes\n',
        );
      const token = opts.token ?? (deps.io.env.RAMPART_JOIN_TOKEN || undefined);
      if (!token || !/^rjt_[A-Za-z0-9_-]{43}$/.test(token))
        throw new UsageError('--token must be a join token from `rampart host join-token`');
      const { joinServer } = await import('../../agent/link/server-dialer.js');
      const { loadAgentConfig } = await import('../../agent/config.js');
      const { hostname } = await import('node:os');
      const dataDir = opts.dataDir ?? (deps.io.env.RAMPART_DATA_DIR || undefined);
      const config = loadAgentConfig(dataDir !== undefined ? { dataDir } : {}, { ...deps.io.env });
      const { mkdirSync } = await import('node:fs');
      mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
      const joined = await joinServer({
        server,
        token,
        caFingerprint: opts.caFingerprint,
        dataDir: config.dataDir,
        name: opts.name ?? config.hostname ?? hostname().split('.')[0]!,
      });
      deps.io.stdout.write(
        `joined as host ${joined.hostname} (${joined.hostId}); the agent dials ${joined.agentEndpoint}\n`,
      );
    });
}
