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
  agent: {
    mode: 'local' | 'external';
    dataDir: string;
    socket: string;
    /** Passed to a local agent as environment (RAMPART_ACCEL etc.). */
    env: Record<string, string>;
  };
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
  return {
    host,
    port,
    dataDir,
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
