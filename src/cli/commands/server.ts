/**
 * `rampart server`: runs the control plane in the foreground. The server module is imported only here,
 * so the client commands never load it.
 */
import type { Command } from 'commander';
import type { ServerCliOptions } from '../../server/main.js';
import type { CommandDeps } from '../context.js';
import { InvalidArgumentError } from 'commander';
import { UsageError } from '../errors.js';
import { parseListen, parsePath } from '../validation.js';

/** Flags win over the environment; unset and empty values are left out. */
export function serverOptions(
  flags: ServerCliOptions,
  env: Readonly<Record<string, string | undefined>>,
): ServerCliOptions {
  const options: ServerCliOptions = {};
  const dataDir = flags.dataDir ?? (env.RAMPART_DATA_DIR || undefined);
  const config = flags.config ?? (env.RAMPART_CONFIG || undefined);
  const listen = flags.listen ?? (env.RAMPART_LISTEN || undefined);
  const database = flags.database ?? (env.RAMPART_DATABASE || undefined);
  if (database !== undefined) {
    try {
      options.database = parseDatabase(database);
    } catch (err) {
      // Not the value: a URL may carry a password.
      throw new UsageError(`invalid RAMPART_DATABASE: ${(err as Error).message}`);
    }
  }
  if (listen !== undefined) {
    try {
      options.listen = parseListen(listen);
    } catch (err) {
      throw new UsageError(`invalid RAMPART_LISTEN ${JSON.stringify(listen)}: ${(err as Error).message}`);
    }
  }
  if (dataDir !== undefined) options.dataDir = dataDir;
  if (config !== undefined) options.config = config;
  if (flags.resetAdminPassword) options.resetAdminPassword = true;
  return options;
}

/**
 * --database / RAMPART_DATABASE: a SQLite file path or a postgres:// (postgresql://) URL with a host and a
 * database name. Checked here without loading the server; the server checks again when it connects.
 */
export function parseDatabase(value: string): string {
  if (value.length === 0 || /[\0\n\r]/.test(value))
    throw new InvalidArgumentError('Expected a file path or a postgres:// URL.');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  if (!/^postgres(?:ql)?:\/\//i.test(value))
    throw new InvalidArgumentError('Expected a file path or a postgres:// URL (postgresql:// also works).');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('Expected a valid postgres:// URL.');
  }
  if (!url.hostname && !url.searchParams.get('host'))
    throw new InvalidArgumentError('The postgres:// URL has no host.');
  if (url.pathname.replace(/^\//, '') === '')
    throw new InvalidArgumentError('The postgres:// URL has no database name.');
  return value;
}

export function registerServerCommand(program: Command, deps: CommandDeps): void {
  program
    .command('server')
    .description(
      'run the Rampart server in the foreground: the REST API, the VM state and the image store ' +
        '(with a local agent in all-in-one mode); stops cleanly on SIGINT/SIGTERM',
    )
    .option('--listen <host:port>', 'address to serve the API on (env RAMPART_LISTEN)', parseListen)
    .option('--data-dir <dir>', 'directory for the database and images (env RAMPART_DATA_DIR)', parsePath)
    .option('--config <file>', 'configuration file (env RAMPART_CONFIG)', parsePath)
    .option(
      '--database <file|url>',
      'control-plane database: a SQLite file (default <data-dir>/db/rampart.db) or ' +
        'postgres://user:password@host[:port]/database for cluster mode (env RAMPART_DATABASE)',
      parseDatabase,
    )
    .option(
      '--reset-admin-password',
      'give user admin a new one-time password (printed once; revokes its sessions and tokens) and exit',
    )
    .addHelpText(
      'after',
      [
        '',
        'Environment:',
        '  RAMPART_LISTEN    address to listen on, as --listen',
        '  RAMPART_DATA_DIR  data directory, as --data-dir',
        '  RAMPART_CONFIG    configuration file, as --config',
        '  RAMPART_DATABASE  SQLite file or postgres:// URL, as --database (the password is never logged)',
        '  RAMPART_ADMIN_PASSWORD  password of the first admin (unattended installs; else a one-time password is printed once)',
        '  RAMPART_SESSION_TTL_SECONDS, RAMPART_REFRESH_TTL_SECONDS  session token / refresh lifetimes (900 / 43200)',
        '  RAMPART_REQUIRE_MFA_FOR_ADMINS  true: admins must enrol TOTP before doing anything else',
        '  RAMPART_LOGIN_ACCOUNT_THRESHOLD, RAMPART_LOGIN_SOURCE_THRESHOLD, RAMPART_LOGIN_BASE_DELAY_MS,',
        '  RAMPART_LOGIN_MAX_BACKOFF_SECONDS  login throttling (5 / 20 failures, 1000 ms doubling, at most 900 s)',
        '  RAMPART_AUDIT_CHECKPOINT_SECONDS  how often the audit chain head is signed (default 10)',
        '  RAMPART_RATE_LIMIT_PRINCIPAL, RAMPART_RATE_LIMIT_TENANT, RAMPART_RATE_LIMIT_ANONYMOUS  API rate limits',
        '                    per user/API token, per tenant, per source address without a principal, as',
        '                    "<n>/s", "<n>/min" or "<n>/h" with optional " burst <m>" (default: n), or 0 = off',
        '                    (defaults "20/s burst 60", "100/s burst 300", "10/s burst 100"; /v1/health is never limited)',
        '  RAMPART_RATE_LIMIT_AUDIT_SECONDS  at most one audit record of 429s per bucket per window (60)',
        '  RAMPART_TRUSTED_PROXIES  comma-separated IPs/CIDRs whose X-Forwarded-For is believed (default none)',
        '  RAMPART_ACCEL     accelerator for the local agent: auto (probe KVM, fall back to TCG), kvm or tcg',
        '  RAMPART_CONSOLE_CAP_BYTES  size cap of each VM console log (default 1 MiB)',
        '  RAMPART_QUOTA_DEFAULTS  platform default quotas, e.g. "vms=10,vcpus=20" (-1 = unlimited)',
        '  RAMPART_CPU_OVERCOMMIT, RAMPART_MEMORY_OVERCOMMIT  scheduler ratios (default 4 and 1)',
        '  RAMPART_MASTER_KEY  base64 of 32 bytes wrapping the image data keys (default: <data>/secrets/master.key)',
        '  RAMPART_IMAGE_MAX_FILE_MIB  largest image file accepted (default and maximum 2047)',
        '  RAMPART_CLAMAV_DATABASE_DIRS  extra ClamAV database directories, colon-separated',
        '  RAMPART_IMAGE_RESCAN_CHECK_SECONDS  re-scan images when the databases changed (default 300; 0 = at start)',
        '  RAMPART_SECURITY_EVENTS_MAX  security events kept (default 100000)',
        '  RAMPART_NETNS     network namespace of the local agent bridges, taps, nft tables and QEMUs',
        "  RAMPART_TUNNEL_IP  the local host's IPv4 underlay address for VXLAN between hosts (default none)",
        '  RAMPART_FIREWALL_RECONCILE_SECONDS  how often the agent repairs firewall drift (default 30; 0 = never)',
        '  RAMPART_TELEMETRY_SECONDS  how often the agent reports spoofing drops, denied flows and VM samples (default 10; 0 = never)',
        '  RAMPART_CGROUP    cgroup driver for the local agent: v1, v2 or none (default: detected)',
        '  RAMPART_CGROUP_PARENT  parent cgroup of the VMs (default rampart)',
        '  RAMPART_AGENT_LISTEN  host:port of the TLS listener remote agents dial (default off; see `rampart host join-token`)',
        '  RAMPART_AGENT_ENDPOINT  host:port joining agents are told to dial (default: the listen address)',
        "  RAMPART_AGENT_HEARTBEAT_SECONDS  remote agents' heartbeat interval; 3 missed close the connection (default 5)",
        '  RAMPART_HOST_LEASE_SECONDS  host lease (default 30, min 10): a remote host cut off for lease-5 s kills its',
        '                   VMs; after lease+5 s the host is failed and its restartable VMs start elsewhere',
        "  RAMPART_HOST_CERT_RENEW_DAYS  renew a connected remote host's certificate this many days before it expires",
        "  RAMPART_ACCEPT_NEW_SECRETS  true: this server's secrets/ replace those the database recorded (only after",
        '                    the old ones were lost: what they signed stops verifying); default: refuse to start',
        '                   (default 30; 0 = only on request: `rampart host renew-certificate`)',
        '  RAMPART_QUOTA_ENFORCEMENT, RAMPART_FAILPOINTS  benchmarks and tests only',
        'Flags take precedence over the environment.',
      ].join('\n'),
    )
    .action(async (flags: ServerCliOptions) => {
      const options = serverOptions(flags, deps.io.env);
      const { runServer } = await import('../../server/main.js');
      await runServer(options);
    });
}
