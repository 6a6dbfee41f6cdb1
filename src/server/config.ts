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

const ConfigFile = Type.Object(
  {
    listen: Type.Optional(Type.String()),
    data_dir: Type.Optional(Type.String()),
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
    agent: Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(Type.Union([Type.Literal('local'), Type.Literal('external')])),
          socket: Type.Optional(Type.String()),
          accel: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')])),
          console_cap_bytes: Type.Optional(Type.Integer({ minimum: 4096, maximum: 1 << 30 })),
          uid_base: Type.Optional(Type.Integer({ minimum: 1000, maximum: 4_000_000_000 })),
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
  guestImageDir: string;
  logLevel: string;
  stopTimeoutSeconds: number;
  auth: AuthConfig;
  audit: { checkpointIntervalSeconds: number };
  agent: {
    mode: 'local' | 'external';
    dataDir: string;
    socket: string;
    /** Passed to a local agent as environment (RAMPART_ACCEL etc.). */
    env: Record<string, string>;
  };
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

export interface ServerConfigInput {
  listen?: string;
  dataDir?: string;
  config?: string;
}

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535)
    throw new InvalidInputError(`listen address must be HOST:PORT, got ${JSON.stringify(listen)}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
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
  const agentDataDir = join(dataDir, 'agent');
  const agentEnv: Record<string, string> = {};
  const accel = env.RAMPART_ACCEL ?? file.agent?.accel;
  if (accel) agentEnv.RAMPART_ACCEL = accel;
  const cap = env.RAMPART_CONSOLE_CAP_BYTES ?? file.agent?.console_cap_bytes?.toString();
  if (cap) agentEnv.RAMPART_CONSOLE_CAP_BYTES = cap;
  const uidBase = env.RAMPART_UID_BASE ?? file.agent?.uid_base?.toString();
  if (uidBase) agentEnv.RAMPART_UID_BASE = uidBase;
  if (env.RAMPART_ACCEL_CACHE) agentEnv.RAMPART_ACCEL_CACHE = env.RAMPART_ACCEL_CACHE;
  const stopTimeout = env.RAMPART_STOP_TIMEOUT_SECONDS ?? file.stop_timeout_seconds?.toString() ?? '30';
  const stopTimeoutSeconds = /^\d{1,4}$/.test(stopTimeout) ? Number(stopTimeout) : NaN;
  if (!Number.isInteger(stopTimeoutSeconds) || stopTimeoutSeconds < 0 || stopTimeoutSeconds > 3600) {
    throw new InvalidInputError('RAMPART_STOP_TIMEOUT_SECONDS must be an integer from 0 to 3600');
  }
  const mode = env.RAMPART_AGENT_MODE ?? file.agent?.mode ?? 'local';
  if (mode !== 'local' && mode !== 'external')
    throw new InvalidInputError('RAMPART_AGENT_MODE must be local or external');
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
  return {
    host,
    port,
    dataDir,
    auth,
    audit,
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
    },
  };
}
