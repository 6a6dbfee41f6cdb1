/**
 * Server configuration: defaults, then an optional TOML file (`--config` / RAMPART_CONFIG), then the
 * environment, then command-line flags. Validated once here; everything else receives a typed object.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { InvalidInputError } from '../api/errors.js';
import { defaultDataDir } from '../common/data-dir.js';
import {
  DEFAULT_RATE_LIMITS,
  parseRateLimit,
  type RateLimit,
  type RateLimitConfig,
} from './http/rate-limit.js';
import { parseTrustedProxies, parseTrustedProxiesList } from './http/trusted-proxies.js';
import { QUOTA_RESOURCES, type QuotaResource } from '../api/quota.js';
import { DEFAULT_OVERCOMMIT, type Overcommit } from './compute/scheduler.js';
import { DEFAULT_QUOTA, type QuotaLimits } from './quota/quota-service.js';
import { databaseTargetProblem, isPostgresUrl } from './store/database.js';

const ConfigFile = Type.Object(
  {
    listen: Type.Optional(Type.String()),
    data_dir: Type.Optional(Type.String()),
    /** The control-plane database: a SQLite file path or a postgres:// URL (default <data_dir>/db/rampart.db). */
    database: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    guest_image_dir: Type.Optional(Type.String()),
    log_level: Type.Optional(Type.String()),
    stop_timeout_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
    auth: Type.Optional(
      Type.Object(
        {
          session_ttl_seconds: Type.Optional(Type.Integer({ minimum: 30, maximum: 86_400 })),
          refresh_ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 30 * 86_400 })),
          require_mfa_for_admins: Type.Optional(Type.Boolean()),
          login_account_threshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          login_source_threshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
          login_base_delay_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
          login_max_backoff_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
    ),
    audit: Type.Optional(
      Type.Object(
        { checkpoint_interval_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })) },
        { additionalProperties: false },
      ),
    ),
    /** Platform default quotas per tenant (-1 = unlimited); keys as in the API (vms, vcpus, memoryMiB, ...). */
    quota: Type.Optional(Type.Record(Type.String(), Type.Integer({ minimum: -1, maximum: 1_000_000_000 }))),
    scheduler: Type.Optional(
      Type.Object(
        {
          cpu_overcommit: Type.Optional(Type.Number({ minimum: 0.1, maximum: 64 })),
          memory_overcommit: Type.Optional(Type.Number({ minimum: 0.1, maximum: 4 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** API rate limits: `"20/s burst 60"`, `"600/min"`, or 0 for none (see http/rate-limit.ts). */
    rate_limit: Type.Optional(
      Type.Object(
        {
          principal: Type.Optional(Type.Union([Type.String(), Type.Literal(0)])),
          tenant: Type.Optional(Type.Union([Type.String(), Type.Literal(0)])),
          anonymous: Type.Optional(Type.Union([Type.String(), Type.Literal(0)])),
          audit_window_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
    ),
    images: Type.Optional(
      Type.Object(
        {
          /** Largest image file accepted, in MiB (ClamAV scans at most 2 GiB - 1 per file). */
          max_file_mib: Type.Optional(Type.Integer({ minimum: 1, maximum: 2047 })),
          /** Extra ClamAV database directories (e.g. a mirror of main.cvd/daily.cvd). */
          clamav_database_dirs: Type.Optional(Type.Array(Type.String(), { maxItems: 16 })),
          /** How often to look for a changed scanner database and re-scan (0 = only at start). */
          rescan_check_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Proxies whose X-Forwarded-For is believed: IPs and CIDR blocks (default none). */
    trusted_proxies: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
    agent: Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(
            Type.Union([Type.Literal('local'), Type.Literal('external'), Type.Literal('none')]),
          ),
          socket: Type.Optional(Type.String()),
          accel: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')])),
          console_cap_bytes: Type.Optional(Type.Integer({ minimum: 4096, maximum: 1 << 30 })),
          uid_base: Type.Optional(Type.Integer({ minimum: 1000, maximum: 4_000_000_000 })),
          /** Agents of further hosts (each started with `rampart agent` and its own data directory). */
          external_sockets: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
type ConfigFile = Static<typeof ConfigFile>;
const configFileValidator = Compile(ConfigFile);

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  /**
   * The control-plane database: a SQLite file (default <dataDir>/db/rampart.db) or a PostgreSQL URL
   * (postgres://user:password@host[:port]/database). Holds a password: log maskDatabaseUrl() of it only.
   */
  database: string;
  guestImageDir: string;
  logLevel: string;
  stopTimeoutSeconds: number;
  /**
   * RAMPART_HOST_LEASE_SECONDS (default 30, 10..3600): a remote host that loses the server for longer
   * than this (minus 5 s) kills its VMs; the server restarts them elsewhere after it plus 5 s.
   */
  hostLeaseSeconds: number;
  /**
   * RAMPART_HOST_CERT_RENEW_DAYS (default 30, 0..3650; 0 = never by itself): a connected remote host
   * whose certificate expires within this many days gets a new one over its link.
   */
  hostCertRenewDays: number;
  /**
   * RAMPART_ACCEPT_NEW_SECRETS (env only, default false): this server's secrets/ replace the
   * fingerprints the database recorded (shared-secrets.ts), instead of refusing to start.
   */
  acceptNewSecrets: boolean;
  auth: AuthConfig;
  audit: { checkpointIntervalSeconds: number };
  quota: { defaults: QuotaLimits; enforce: boolean };
  overcommit: Overcommit;
  rateLimit: RateLimitConfig;
  /** IPs/CIDRs whose X-Forwarded-For is believed; empty: request.ip is always the socket peer. */
  trustedProxies: string[];
  images: ImagesConfig;
  agent: {
    /** local: spawn and supervise this machine's agent; external: only connect; none: no agent here. */
    mode: 'local' | 'external' | 'none';
    dataDir: string;
    socket: string;
    /** Passed to a local agent as environment (RAMPART_ACCEL etc.). */
    env: Record<string, string>;
    /** Unix sockets of the agents of further hosts, which the server connects to (never starts). */
    externalSockets: string[];
  };
  /**
   * RAMPART_AGENT_LISTEN=host:port: the TLS listener remote agents dial (off when unset).
   * RAMPART_AGENT_ENDPOINT: the host:port agents are told to dial (default: the listen address; the
   * listener's certificate names its host). RAMPART_AGENT_HEARTBEAT_SECONDS: the agents' heartbeat
   * interval the server expects (a connection silent for three is closed; default 5).
   */
  agentListener: {
    host: string;
    port: number;
    endpointHost: string;
    endpointPort: number | null;
    heartbeatSeconds: number;
  } | null;
}

export interface AuthConfig {
  sessionTtlSeconds: number;
  refreshTtlSeconds: number;
  /** Platform policy: every admin (platform-admin, tenant-admin) must use TOTP. */
  requireMfaForAdmins: boolean;
  loginAccountThreshold: number;
  loginSourceThreshold: number;
  loginBaseDelayMs: number;
  loginMaxBackoffSeconds: number;
}

export interface ImagesConfig {
  maxFileBytes: number;
  clamavDatabaseDirs: string[];
  rescanCheckSeconds: number;
}

/** An integer from the environment, the file or the default, within bounds (a clear error otherwise). */
function intSetting(
  name: string,
  fromEnv: string | undefined,
  fromFile: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (fromEnv === undefined) return fromFile ?? fallback;
  const value = /^\d{1,9}$/.test(fromEnv) ? Number(fromEnv) : NaN;
  if (!Number.isInteger(value) || value < min || value > max)
    throw new InvalidInputError(`${name} must be an integer from ${min} to ${max}`);
  return value;
}

function boolSetting(name: string, fromEnv: string | undefined, fromFile: boolean | undefined): boolean {
  if (fromEnv === undefined) return fromFile ?? false;
  if (fromEnv === 'true' || fromEnv === '1') return true;
  if (fromEnv === 'false' || fromEnv === '0') return false;
  throw new InvalidInputError(`${name} must be true or false`);
}

/** `vms=10,vcpus=20` (env) over the TOML `[quota]` table over the built-in defaults. */
function quotaDefaults(fromFile: Record<string, number>, fromEnv: string | undefined): QuotaLimits {
  const limits: QuotaLimits = { ...DEFAULT_QUOTA };
  const set = (key: string, value: number, where: string) => {
    if (!(QUOTA_RESOURCES as readonly string[]).includes(key))
      throw new InvalidInputError(
        `${where}: unknown quota ${JSON.stringify(key)} (known: ${QUOTA_RESOURCES.join(', ')})`,
      );
    if (!Number.isInteger(value) || value < -1)
      throw new InvalidInputError(`${where}: ${key} must be an integer >= -1`);
    limits[key as QuotaResource] = value;
  };
  for (const [key, value] of Object.entries(fromFile)) set(key, value, 'config [quota]');
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    for (const part of fromEnv.split(',')) {
      const match = /^\s*([A-Za-z]+)\s*=\s*(-?\d{1,10})\s*$/.exec(part);
      if (!match) throw new InvalidInputError('RAMPART_QUOTA_DEFAULTS must look like vms=10,vcpus=20');
      set(match[1]!, Number(match[2]), 'RAMPART_QUOTA_DEFAULTS');
    }
  }
  return limits;
}

/** Quota enforcement can be turned off only for benchmarks that measure what it costs. */
function quotaEnforcement(fromEnv: string | undefined): boolean {
  if (fromEnv === undefined || fromEnv === 'on') return true;
  if (fromEnv === 'off') return false;
  throw new InvalidInputError('RAMPART_QUOTA_ENFORCEMENT must be on or off');
}

function ratioSetting(
  name: string,
  fromEnv: string | undefined,
  fromFile: number | undefined,
  fallback: number,
  max: number,
): number {
  if (fromEnv === undefined) return fromFile ?? fallback;
  const value = /^\d{1,3}(\.\d{1,3})?$/.test(fromEnv) ? Number(fromEnv) : NaN;
  if (!(value >= 0.1 && value <= max))
    throw new InvalidInputError(`${name} must be a number from 0.1 to ${max}`);
  return value;
}

/** A rate limit from the environment, the file or the default (a clear error naming the setting). */
function rateLimitSetting(
  envName: string,
  fromEnv: string | undefined,
  fileKey: string,
  fromFile: string | 0 | undefined,
  fallback: RateLimit,
): RateLimit {
  const [name, text] =
    fromEnv !== undefined ? [envName, fromEnv] : [`config rate_limit.${fileKey}`, fromFile?.toString()];
  if (text === undefined) return fallback;
  try {
    return parseRateLimit(text);
  } catch (error) {
    throw new InvalidInputError(`${name}: ${(error as Error).message}`);
  }
}

function rateLimitConfig(file: ConfigFile['rate_limit'], env: NodeJS.ProcessEnv): RateLimitConfig {
  const r = file ?? {};
  const d = DEFAULT_RATE_LIMITS;
  return {
    principal: rateLimitSetting(
      'RAMPART_RATE_LIMIT_PRINCIPAL',
      env.RAMPART_RATE_LIMIT_PRINCIPAL,
      'principal',
      r.principal,
      d.principal,
    ),
    tenant: rateLimitSetting(
      'RAMPART_RATE_LIMIT_TENANT',
      env.RAMPART_RATE_LIMIT_TENANT,
      'tenant',
      r.tenant,
      d.tenant,
    ),
    anonymous: rateLimitSetting(
      'RAMPART_RATE_LIMIT_ANONYMOUS',
      env.RAMPART_RATE_LIMIT_ANONYMOUS,
      'anonymous',
      r.anonymous,
      d.anonymous,
    ),
    auditWindowSeconds: intSetting(
      'RAMPART_RATE_LIMIT_AUDIT_SECONDS',
      env.RAMPART_RATE_LIMIT_AUDIT_SECONDS,
      r.audit_window_seconds,
      d.auditWindowSeconds,
      1,
      86_400,
    ),
  };
}

/** RAMPART_TRUSTED_PROXIES (comma separated) over the file's `trusted_proxies`; default none. */
function trustedProxiesSetting(fromEnv: string | undefined, fromFile: string[] | undefined): string[] {
  try {
    return fromEnv !== undefined ? parseTrustedProxiesList(fromEnv) : parseTrustedProxies(fromFile ?? []);
  } catch (error) {
    const name = fromEnv !== undefined ? 'RAMPART_TRUSTED_PROXIES' : 'config trusted_proxies';
    throw new InvalidInputError(`${name}: ${(error as Error).message}`);
  }
}

export interface ServerConfigInput {
  listen?: string;
  dataDir?: string;
  config?: string;
  /** A SQLite file path or a postgres:// URL (flag --database, env RAMPART_DATABASE, file `database`). */
  database?: string;
}

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535)
    throw new InvalidInputError(`listen address must be HOST:PORT, got ${JSON.stringify(listen)}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** The database target: a postgres:// URL as given, a file path resolved, or the default file. */
function databaseSetting(value: string | undefined, dataDir: string): string {
  if (value === undefined) return join(dataDir, 'db', 'rampart.db');
  const problem = databaseTargetProblem(value);
  // The message never carries the value itself: it may hold a password.
  if (problem) throw new InvalidInputError(`database setting: ${problem}`);
  return isPostgresUrl(value) ? value : resolve(value);
}

function repoRoot(): string {
  // dist/src/server/config.js -> repository root
  return resolve(new URL('.', import.meta.url).pathname, '..', '..', '..');
}

export function loadServerConfig(
  input: ServerConfigInput,
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  const path = input.config ?? env.RAMPART_CONFIG;
  let file: ConfigFile = {};
  if (path) {
    const parsed: unknown = parseToml(readFileSync(path, 'utf8'));
    if (!configFileValidator.Check(parsed)) {
      const first = [...configFileValidator.Errors(parsed)][0];
      throw new InvalidInputError(
        `config file ${path}: ${first ? `${first.instancePath} ${first.message}` : 'invalid'}`,
      );
    }
    file = parsed;
  }
  const listen = input.listen ?? env.RAMPART_LISTEN ?? file.listen ?? '127.0.0.1:8480';
  const { host, port } = parseListen(listen);
  const dataDir = resolve(input.dataDir ?? env.RAMPART_DATA_DIR ?? file.data_dir ?? defaultDataDir());
  const database = databaseSetting(
    input.database ?? (env.RAMPART_DATABASE || undefined) ?? file.database,
    dataDir,
  );
  const agentDataDir = join(dataDir, 'agent');
  const agentEnv: Record<string, string> = {};
  const accel = env.RAMPART_ACCEL ?? file.agent?.accel;
  if (accel) agentEnv.RAMPART_ACCEL = accel;
  const cap = env.RAMPART_CONSOLE_CAP_BYTES ?? file.agent?.console_cap_bytes?.toString();
  if (cap) agentEnv.RAMPART_CONSOLE_CAP_BYTES = cap;
  const uidBase = env.RAMPART_UID_BASE ?? file.agent?.uid_base?.toString();
  if (uidBase) agentEnv.RAMPART_UID_BASE = uidBase;
  if (env.RAMPART_ACCEL_CACHE) agentEnv.RAMPART_ACCEL_CACHE = env.RAMPART_ACCEL_CACHE;
  // cgroup driver choice and the parent cgroup of the VMs (tests use a unique parent per run).
  if (env.RAMPART_CGROUP) agentEnv.RAMPART_CGROUP = env.RAMPART_CGROUP;
  if (env.RAMPART_CGROUP_PARENT) agentEnv.RAMPART_CGROUP_PARENT = env.RAMPART_CGROUP_PARENT;
  // The network namespace of the host's bridges and QEMUs (tests create one per run).
  if (env.RAMPART_NETNS) agentEnv.RAMPART_NETNS = env.RAMPART_NETNS;
  // What the local host reports about itself: its name, the capacity it offers, its tunnel address.
  for (const name of [
    'RAMPART_HOST_NAME',
    'RAMPART_HOST_CPUS',
    'RAMPART_HOST_MEMORY_MIB',
    'RAMPART_UID_COUNT',
    'RAMPART_DEDICATED_CPUS',
    'RAMPART_TUNNEL_IP',
  ]) {
    const value = env[name];
    if (value) agentEnv[name] = value;
  }
  for (const name of ['RAMPART_FIREWALL_RECONCILE_SECONDS', 'RAMPART_TELEMETRY_SECONDS']) {
    const value = env[name];
    if (value) agentEnv[name] = value;
  }
  const stopTimeout = env.RAMPART_STOP_TIMEOUT_SECONDS ?? file.stop_timeout_seconds?.toString() ?? '30';
  const stopTimeoutSeconds = /^\d{1,4}$/.test(stopTimeout) ? Number(stopTimeout) : NaN;
  if (!Number.isInteger(stopTimeoutSeconds) || stopTimeoutSeconds < 0 || stopTimeoutSeconds > 3600) {
    throw new InvalidInputError('RAMPART_STOP_TIMEOUT_SECONDS must be an integer from 0 to 3600');
  }
  const mode = env.RAMPART_AGENT_MODE ?? file.agent?.mode ?? 'local';
  if (mode !== 'local' && mode !== 'external' && mode !== 'none')
    throw new InvalidInputError('RAMPART_AGENT_MODE must be local, external or none');
  const externalSockets = (
    env.RAMPART_AGENT_SOCKETS !== undefined
      ? env.RAMPART_AGENT_SOCKETS.split(',').filter((p) => p.trim() !== '')
      : (file.agent?.external_sockets ?? [])
  ).map((path) => {
    const trimmed = path.trim();
    if (!/^\/[A-Za-z0-9._/-]+$/.test(trimmed))
      throw new InvalidInputError(
        `RAMPART_AGENT_SOCKETS: ${JSON.stringify(trimmed)} is not an absolute socket path`,
      );
    return resolve(trimmed);
  });
  const a = file.auth ?? {};
  const auth: AuthConfig = {
    sessionTtlSeconds: intSetting(
      'RAMPART_SESSION_TTL_SECONDS',
      env.RAMPART_SESSION_TTL_SECONDS,
      a.session_ttl_seconds,
      900,
      30,
      86_400,
    ),
    refreshTtlSeconds: intSetting(
      'RAMPART_REFRESH_TTL_SECONDS',
      env.RAMPART_REFRESH_TTL_SECONDS,
      a.refresh_ttl_seconds,
      43_200,
      60,
      30 * 86_400,
    ),
    requireMfaForAdmins: boolSetting(
      'RAMPART_REQUIRE_MFA_FOR_ADMINS',
      env.RAMPART_REQUIRE_MFA_FOR_ADMINS,
      a.require_mfa_for_admins,
    ),
    loginAccountThreshold: intSetting(
      'RAMPART_LOGIN_ACCOUNT_THRESHOLD',
      env.RAMPART_LOGIN_ACCOUNT_THRESHOLD,
      a.login_account_threshold,
      5,
      1,
      1000,
    ),
    loginSourceThreshold: intSetting(
      'RAMPART_LOGIN_SOURCE_THRESHOLD',
      env.RAMPART_LOGIN_SOURCE_THRESHOLD,
      a.login_source_threshold,
      20,
      1,
      100_000,
    ),
    loginBaseDelayMs: intSetting(
      'RAMPART_LOGIN_BASE_DELAY_MS',
      env.RAMPART_LOGIN_BASE_DELAY_MS,
      a.login_base_delay_ms,
      1000,
      1,
      60_000,
    ),
    loginMaxBackoffSeconds: intSetting(
      'RAMPART_LOGIN_MAX_BACKOFF_SECONDS',
      env.RAMPART_LOGIN_MAX_BACKOFF_SECONDS,
      a.login_max_backoff_seconds,
      900,
      1,
      86_400,
    ),
  };
  const audit = {
    checkpointIntervalSeconds: intSetting(
      'RAMPART_AUDIT_CHECKPOINT_SECONDS',
      env.RAMPART_AUDIT_CHECKPOINT_SECONDS,
      file.audit?.checkpoint_interval_seconds,
      10,
      1,
      86_400,
    ),
  };
  const quota = {
    defaults: quotaDefaults(file.quota ?? {}, env.RAMPART_QUOTA_DEFAULTS),
    enforce: quotaEnforcement(env.RAMPART_QUOTA_ENFORCEMENT),
  };
  const overcommit: Overcommit = {
    cpu: ratioSetting(
      'RAMPART_CPU_OVERCOMMIT',
      env.RAMPART_CPU_OVERCOMMIT,
      file.scheduler?.cpu_overcommit,
      DEFAULT_OVERCOMMIT.cpu,
      64,
    ),
    memory: ratioSetting(
      'RAMPART_MEMORY_OVERCOMMIT',
      env.RAMPART_MEMORY_OVERCOMMIT,
      file.scheduler?.memory_overcommit,
      DEFAULT_OVERCOMMIT.memory,
      4,
    ),
  };
  const rateLimit = rateLimitConfig(file.rate_limit, env);
  const images: ImagesConfig = {
    maxFileBytes:
      intSetting(
        'RAMPART_IMAGE_MAX_FILE_MIB',
        env.RAMPART_IMAGE_MAX_FILE_MIB,
        file.images?.max_file_mib,
        2047,
        1,
        2047,
      ) *
      1024 *
      1024,
    clamavDatabaseDirs: (env.RAMPART_CLAMAV_DATABASE_DIRS !== undefined
      ? env.RAMPART_CLAMAV_DATABASE_DIRS.split(':').filter((d) => d !== '')
      : (file.images?.clamav_database_dirs ?? [])
    ).map((d) => resolve(d)),
    rescanCheckSeconds: intSetting(
      'RAMPART_IMAGE_RESCAN_CHECK_SECONDS',
      env.RAMPART_IMAGE_RESCAN_CHECK_SECONDS,
      file.images?.rescan_check_seconds,
      300,
      0,
      86_400,
    ),
  };
  const trustedProxies = trustedProxiesSetting(env.RAMPART_TRUSTED_PROXIES, file.trusted_proxies);
  let agentListener: ServerConfig['agentListener'] = null;
  if (env.RAMPART_AGENT_LISTEN) {
    const listenAt = parseListen(env.RAMPART_AGENT_LISTEN);
    const endpoint = env.RAMPART_AGENT_ENDPOINT ? parseListen(env.RAMPART_AGENT_ENDPOINT) : null;
    // Agents verify the listener by the host they dial: a wildcard address names no host.
    if (!endpoint && ['0.0.0.0', '::', ''].includes(listenAt.host))
      throw new InvalidInputError(
        'RAMPART_AGENT_ENDPOINT (host:port agents dial) is needed when RAMPART_AGENT_LISTEN is a wildcard address',
      );
    agentListener = {
      ...listenAt,
      endpointHost: endpoint?.host ?? listenAt.host,
      endpointPort: endpoint?.port ?? null,
      heartbeatSeconds: intSetting(
        'RAMPART_AGENT_HEARTBEAT_SECONDS',
        env.RAMPART_AGENT_HEARTBEAT_SECONDS,
        undefined,
        5,
        1,
        300,
      ),
    };
  }
  const hostLeaseSeconds = intSetting(
    'RAMPART_HOST_LEASE_SECONDS',
    env.RAMPART_HOST_LEASE_SECONDS,
    undefined,
    30,
    10,
    3600,
  );
  const hostCertRenewDays = intSetting(
    'RAMPART_HOST_CERT_RENEW_DAYS',
    env.RAMPART_HOST_CERT_RENEW_DAYS,
    undefined,
    30,
    0,
    3650,
  );
  return {
    agentListener,
    hostLeaseSeconds,
    hostCertRenewDays,
    acceptNewSecrets: boolSetting('RAMPART_ACCEPT_NEW_SECRETS', env.RAMPART_ACCEPT_NEW_SECRETS, undefined),
    host,
    port,
    dataDir,
    database,
    rateLimit,
    trustedProxies,
    images,
    auth,
    audit,
    quota,
    overcommit,
    guestImageDir: resolve(
      env.RAMPART_GUEST_IMAGE_DIR ?? file.guest_image_dir ?? join(repoRoot(), 'guest', 'out', 'tiny'),
    ),
    logLevel: env.RAMPART_LOG_LEVEL ?? file.log_level ?? 'info',
    stopTimeoutSeconds,
    agent: {
      mode,
      dataDir: agentDataDir,
      socket: resolve(env.RAMPART_AGENT_SOCKET ?? file.agent?.socket ?? join(agentDataDir, 'agent.sock')),
      env: agentEnv,
      externalSockets,
    },
  };
}
