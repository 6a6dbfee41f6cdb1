/**
 * `rampart server`: opens the database, seeds the catalog, ensures the bootstrap token, keeps the
 * local agent connected (all-in-one), and serves the REST API. Stopping the server leaves the agent
 * and its VMs running; the next start re-adopts them.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../common/logger.js';
import { RAMPART_VERSION } from '../common/version.js';
import { TokenVerifier, ensureBootstrapToken, resetBootstrapToken } from './auth/bootstrap-token.js';
import { seedFlavors } from './compute/flavor-catalog.js';
import { markHostOffline, recordHostHello } from './compute/host-registry.js';
import { VmService } from './compute/vm-service.js';
import { loadServerConfig, type ServerConfigInput } from './config.js';
import { ConsoleHub } from './console/console-hub.js';
import { LocalAgentSupervisor } from './agent-link/local-agent-supervisor.js';
import { buildApp } from './http/app.js';
import { registerDefaultImage } from './images/image-catalog.js';
import { createMetrics } from './metrics.js';
import { openDatabase } from './store/database.js';

export interface ServerCliOptions extends ServerConfigInput {
  resetBootstrapToken?: boolean;
}

export async function runServer(options: ServerCliOptions): Promise<void> {
  const config = loadServerConfig(options);
  const log = createLogger('rampart-server', config.logLevel);
  // The data directory must be traversable by the VMs' unprivileged uids (images, per-VM dirs).
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
  chmodSync(config.dataDir, 0o755);
  const dbFile = join(config.dataDir, 'db', 'rampart.db');
  const db = await openDatabase(dbFile);
  for (const file of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);

  if (options.resetBootstrapToken) {
    const token = await resetBootstrapToken(db);
    process.stdout.write(`New bootstrap admin token (shown once): ${token}\n`);
    await db.destroy();
    return;
  }

  await seedFlavors(db);
  const image = await registerDefaultImage(db, config.guestImageDir, config.dataDir);
  if (image) {
    config.agent.env.RAMPART_PROBE_KERNEL = image.kernelPath;
    config.agent.env.RAMPART_PROBE_INITRD = image.initrdPath;
  }
  if (!image)
    log.warn(
      { dir: config.guestImageDir },
      'default guest image not built yet (run guest/build.sh); image "tiny" is not registered',
    );
  const bootstrap = await ensureBootstrapToken(db, process.env.RAMPART_BOOTSTRAP_TOKEN);
  const tokens = new TokenVerifier(db);
  await tokens.load();

  const supervisor = new LocalAgentSupervisor(
    { ...config.agent, logLevel: config.logLevel },
    log.child({ component: 'agent-link' }),
  );
  const consoleHub = new ConsoleHub();
  let vms: VmService | null = null;
  const metrics = createMetrics(async () => (vms ? vms.countByState() : {}));
  vms = new VmService(
    db,
    { connectionFor: (hostId) => (supervisor.current?.host?.hostId === hostId ? supervisor.current : null) },
    metrics,
    log.child({ component: 'compute' }),
    { defaultStopTimeoutSeconds: config.stopTimeoutSeconds },
  );
  const vmService = vms;

  let connectedHostId: string | null = null;
  supervisor.on('connected', (connection, host) => {
    connectedHostId = host.hostId;
    metrics.agentConnected.set(1);
    connection.on('status', (status) => vmService.onStatus(status));
    connection.on('console', (vmId, data) => consoleHub.publish(vmId, data));
    connection.on('event', (event) =>
      log.info({ kind: event.kind, vmId: event.vmId, data: event.data }, 'host event'),
    );
    void (async () => {
      await recordHostHello(db, host);
      await vmService.syncHost(host.hostId, connection);
    })().catch((error: unknown) => log.error({ err: (error as Error).message }, 'host sync failed'));
  });
  supervisor.on('disconnected', () => {
    metrics.agentConnected.set(0);
    if (connectedHostId) void markHostOffline(db, connectedHostId);
  });
  // Until an agent says hello in this run, no host is known to be online.
  await db.updateTable('hosts').set({ state: 'offline' }).execute();
  supervisor.start();

  const app = await buildApp(
    { db, vms: vmService, consoleHub, metrics, tokens, version: RAMPART_VERSION },
    log,
  );
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  process.stdout.write(
    `Rampart ${RAMPART_VERSION} listening on http://${host}:${port} (data in ${config.dataDir})\n`,
  );
  if (bootstrap.generated) {
    process.stdout.write(
      `Bootstrap admin token (shown only now; store it safely):\n\n  export RAMPART_URL=http://${host}:${port}\n  export RAMPART_TOKEN=${bootstrap.generated}\n\n`,
    );
  } else {
    process.stdout.write(
      'Authenticate with the bootstrap token: export RAMPART_TOKEN=... (lost it? rampart server --reset-bootstrap-token)\n',
    );
  }

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down (the agent and its VMs keep running)');
    supervisor.stop();
    vmService.stopTimers();
    void app
      .close()
      .then(() => db.destroy())
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
