/**
 * `rampart server`: opens the database, seeds the catalog, ensures the first admin, keeps the
 * local agent connected (all-in-one), and serves the REST API. Stopping the server leaves the agent
 * and its VMs running; the next start re-adopts them.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { TELEMETRY_EVENT_KIND } from '../api/telemetry.js';
import { createLogger } from '../common/logger.js';
import { newId } from '../common/ids.js';
import { RAMPART_VERSION } from '../common/version.js';
import { AuditLog } from './audit/audit-log.js';
import { ADMIN_USERNAME, ensureAdmin, resetAdminPassword } from './iam/admin-bootstrap.js';
import { Authenticator } from './iam/authenticator.js';
import { applyLoginEvent } from './iam/login-throttle.js';
import { RoleDirectory } from './iam/role-directory.js';
import { SessionTokenSigner, loadSessionKey } from './iam/session-tokens.js';
import { TenantDirectory } from './iam/tenant-directory.js';
import { UserDirectory } from './iam/user-directory.js';
import { QuotaService } from './quota/quota-service.js';
import { SecurityEventLog } from './security/security-events.js';
import { AlertStore } from './security/alerts.js';
import { ComplianceService } from './security/compliance/compliance-service.js';
import { complianceIntervalSeconds } from './security/compliance/score.js';
import { ConsoleWatch } from './security/console-watch.js';
import { HeartbeatWatch, heartbeatLostAfterMs } from './security/heartbeat-watch.js';
import { DetectionProgress } from './security/detection-progress.js';
import { DetectionService } from './security/detection-service.js';
import { detectionResponder } from './security/detection-responder.js';
import { loginEvent, vmExitEvent } from './security/event-producers.js';
import { TelemetryIngest } from './security/telemetry-ingest.js';
import { armedFailpoints } from './failpoints.js';
import { seedFlavors } from './compute/flavor-catalog.js';
import { recordHostHello } from './compute/host-registry.js';
import { VmService } from './compute/vm-service.js';
import { VmSampleStore } from './compute/vm-samples.js';
import { loadServerConfig, type ServerConfigInput } from './config.js';
import { ConsoleHub } from './console/console-hub.js';
import { AgentFleet } from './agent-link/agent-fleet.js';
import { VolumeService } from './volumes/volume-service.js';
import { VolumeSnapshotService } from './volumes/volume-snapshots.js';
import { VolumeBackupService } from './volumes/volume-backups.js';
import { buildApp } from './http/app.js';
import { diskImageBacking, registerDefaultImage } from './images/image-catalog.js';
import { openImageServices } from './images/image-services.js';
import { NetworkService } from './network/network-service.js';
import { createMetrics } from './metrics.js';
import { engineOf, maskDatabaseUrl, openDatabase } from './store/database.js';
import { ChangeFeed } from './cluster/change-feed.js';
import { LeaderLease } from './cluster/leader-lease.js';
import { SecurityEventDelivery } from './cluster/security-event-delivery.js';
import { startAgentListener } from './cluster/remote-hosts.js';
import { checkSharedSecrets } from './cluster/shared-secrets.js';
import { HostCa } from './cluster/host-ca.js';
import { loadOrCreateAuditKeys } from './audit/audit-keys.js';
import { PlatformSigner } from './images/platform-signer.js';
import { HostFailover, fencingHosts, markHostDisconnected } from './cluster/host-failover.js';
import { ReplicaRegistry } from './cluster/replica-registry.js';
import { AgentForwarding } from './cluster/agent-forwarding.js';
import { ConsoleRelay } from './cluster/console-relay.js';

export interface ServerCliOptions extends ServerConfigInput {
  resetAdminPassword?: boolean;
}

export async function runServer(options: ServerCliOptions): Promise<void> {
  const config = loadServerConfig(options);
  const log = createLogger('rampart-server', config.logLevel);
  // The data directory must be traversable by the VMs' unprivileged uids (images, per-VM dirs).
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
  chmodSync(config.dataDir, 0o755);
  // A SQLite file (the default, in the data directory) or a PostgreSQL URL; never log the password.
  const db = await openDatabase(config.database);
  if (engineOf(db) === 'sqlite') {
    const dbFile = config.database;
    for (const file of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`])
      if (existsSync(file)) chmodSync(file, 0o600);
  }
  log.info({ engine: engineOf(db), database: maskDatabaseUrl(config.database) }, 'database open');

  const users = new UserDirectory(db);
  const roles = new RoleDirectory(db);
  const tenants = new TenantDirectory(db);
  await roles.reload();

  if (options.resetAdminPassword) {
    const password = await resetAdminPassword(users);
    process.stdout.write(
      `New one-time password for ${ADMIN_USERNAME} (shown once; change it at the first login): ${password}\n`,
    );
    await db.destroy();
    return;
  }
  // Every server on this database holds the same secrets: created here when this data directory has
  // none yet, then checked against the fingerprints the database recorded (shared-secrets.ts).
  try {
    loadSessionKey(config.dataDir).fill(0);
    loadOrCreateAuditKeys(config.dataDir);
    PlatformSigner.load(config.dataDir);
    if (config.agentListener) await HostCa.open(config.dataDir);
    const replaced = await checkSharedSecrets(db, config.dataDir, { acceptNew: config.acceptNewSecrets });
    if (replaced.length > 0)
      log.warn(
        { secrets: replaced },
        "this server's secrets replaced the fingerprints the database recorded (RAMPART_ACCEPT_NEW_SECRETS)",
      );
  } catch (error) {
    await db.destroy();
    throw error;
  }
  // Server replicas on one PostgreSQL database: a role change made through another replica reloads
  // this one's policy (LISTEN/NOTIFY; nothing to do on SQLite).
  const changes = new ChangeFeed(db, { log: log.child({ component: 'change-feed' }) });
  await changes.start();
  roles.onChanged = () =>
    changes
      .notify('roles')
      .catch((error: unknown) => log.warn({ err: (error as Error).message }, 'change feed: notify failed'));
  changes.on('change', (topic) => {
    if (topic === 'roles' || topic === '*')
      roles
        .refresh()
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'roles reload failed'));
  });

  await seedFlavors(db);
  const bootstrap = await ensureAdmin(users, roles, tenants, process.env.RAMPART_ADMIN_PASSWORD);
  const audit = await AuditLog.open(db, config.dataDir, {
    checkpointIntervalMs: config.audit.checkpointIntervalSeconds * 1000,
    log: log.child({ component: 'audit' }),
  });
  if (armedFailpoints().length > 0)
    log.warn(
      { failpoints: armedFailpoints() },
      'FAILPOINTS ARMED: this server kills itself on purpose (tests only)',
    );
  const quotas = new QuotaService(db, config.quota);
  const networks = new NetworkService(db, quotas);
  // The one security event stream of this server: services that record events get it at construction.
  const securityEvents = new SecurityEventLog(db, { log: log.child({ component: 'security' }) });
  // With several replicas every replica's events reach this one's listeners, in seq order (the
  // WebSocket stream, the leader's detection engine, the login throttle below).
  const eventDelivery = changes.postgres
    ? new SecurityEventDelivery({
        events: securityEvents,
        feed: changes,
        log: log.child({ component: 'security-event-delivery' }),
      })
    : null;
  await eventDelivery?.start();
  const images = await openImageServices({
    db,
    dataDir: config.dataDir,
    config: config.images,
    quotas,
    audit,
    securityEvents,
    log: log.child({ component: 'images' }),
  });
  const image = await registerDefaultImage(db, images.importer, images.store, config.guestImageDir).catch(
    (error: unknown) => {
      log.error({ err: (error as Error).message }, 'the default guest image could not be imported');
      return null;
    },
  );
  if (image?.status === 'active') {
    // The agent probes the accelerator by booting the default guest: give it the verified plaintext.
    // An altered cached copy is removed by the first call (and logged); the second rebuilds it.
    const cached = (sha: string) =>
      images.store.materialize('platform', sha).catch((error: unknown) => {
        log.warn({ err: (error as Error).message }, 'rebuilding the default image cache');
        return images.store.materialize('platform', sha);
      });
    config.agent.env.RAMPART_PROBE_KERNEL = await cached(image.kernelSha256);
    config.agent.env.RAMPART_PROBE_INITRD = await cached(image.initrdSha256);
  } else if (image) {
    log.warn({ status: image.status, reason: image.statusReason }, 'the default guest image is not usable');
  } else {
    log.warn(
      { dir: config.guestImageDir },
      'default guest image not built yet (run guest/build.sh); image "tiny" is not registered',
    );
  }
  const authenticator = new Authenticator(
    db,
    users,
    roles,
    new SessionTokenSigner(loadSessionKey(config.dataDir)),
    config.auth,
    quotas,
    (attempt) =>
      void securityEvents
        .record(loginEvent(attempt))
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed')),
  );
  // Guesses through another replica count here too (its login events, delivered from the stream).
  securityEvents.on('event', (event, origin) => {
    if (origin === 'remote') applyLoginEvent(authenticator.throttle, event);
  });

  if (!config.quota.enforce)
    log.warn('quota enforcement is OFF (RAMPART_QUOTA_ENFORCEMENT=off): benchmarks only');
  // The local agent (started when missing, unless external) and the agents of further hosts.
  const fleet = new AgentFleet(
    [
      // none: a control-plane-only replica; its hosts are remote (RAMPART_AGENT_LISTEN) or external.
      ...(config.agent.mode === 'none'
        ? []
        : [{ ...config.agent, mode: config.agent.mode, logLevel: config.logLevel }]),
      ...config.agent.externalSockets.map((socket) => ({
        mode: 'external' as const,
        socket,
        dataDir: '',
        env: {},
        logLevel: config.logLevel,
      })),
    ],
    log.child({ component: 'agent-link' }),
  );
  // Server replicas: each host's agent is linked to one replica; the others forward its requests
  // there through the database (a single server: everything is local).
  const replicas = new ReplicaRegistry(db, { feed: changes, log: log.child({ component: 'replicas' }) });
  await replicas.start();
  const forwarding = new AgentForwarding({
    db,
    secret: loadSessionKey(config.dataDir),
    feed: changes,
    replicaId: replicas.id,
    local: (hostId) => fleet.localConnection(hostId),
    log: log.child({ component: 'agent-forwarding' }),
  });
  fleet.elsewhere = (hostId) => {
    const replica = replicas.replicaOf(hostId);
    return replica ? forwarding.channel(hostId, replica) : null;
  };
  forwarding.start();
  const consoleHub = new ConsoleHub();
  // Live consoles of VMs on hosts linked to another replica come over the change feed.
  const consoleRelay = new ConsoleRelay({
    feed: changes,
    hub: consoleHub,
    replicaId: replicas.id,
    log: log.child({ component: 'console-relay' }),
  });
  consoleRelay.start();
  let vms: VmService | null = null;
  let securityState: { alerts: AlertStore; compliance: ComplianceService } | null = null;
  const metrics = createMetrics(
    async () => (vms ? vms.countByState() : {}),
    async () => (vms ? vms.portPacketSamples() : []),
    async () => ({
      alertsOpen: securityState ? await securityState.alerts.openBySeverity() : {},
      complianceScore: securityState ? ((await securityState.compliance.latest())?.score ?? null) : null,
    }),
  );
  const imageBacking = diskImageBacking(db, images.store);
  const volumes = new VolumeService({
    db,
    keyring: images.keyring,
    quotas,
    agents: fleet,
    audit,
    log: log.child({ component: 'volumes' }),
    imageBacking,
  });
  const snapshots = new VolumeSnapshotService(
    {
      db,
      keyring: images.keyring,
      quotas,
      agents: fleet,
      audit,
      log: log.child({ component: 'snapshots' }),
      imageBacking,
    },
    volumes,
  );
  const backups = new VolumeBackupService(
    {
      db,
      keyring: images.keyring,
      quotas,
      agents: fleet,
      audit,
      log: log.child({ component: 'backups' }),
      imageBacking,
      signer: images.signer,
      dataDir: config.dataDir,
    },
    volumes,
  );
  vms = new VmService(db, fleet, metrics, log.child({ component: 'compute' }), {
    defaultStopTimeoutSeconds: config.stopTimeoutSeconds,
    quotas,
    overcommit: config.overcommit,
    images: { store: images.store, platformKeys: images.platformKeys },
    networks,
    volumes,
    onCrash: async (vm, reason) => {
      await securityEvents
        .record(vmExitEvent(vm, reason))
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed'));
    },
    // A VM that failed for good (its image did not verify) is audited and raises a security event.
    onFatal: async (vm, reason) => {
      log.warn({ vmId: vm.id, reason }, 'VM failed on its host');
      await audit
        .append({
          actorId: null,
          actor: 'system:agent',
          tenantId: vm.tenantId,
          action: 'image:verify',
          target: vm.id,
          outcome: 'failure',
          status: 0,
          source: vm.hostId ?? 'agent',
          requestId: newId(),
          detail: reason,
        })
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'audit append failed'));
      await securityEvents
        .record({
          kind: 'image.verification_failed',
          severity: 'high',
          tenantId: vm.tenantId,
          subjectType: 'vm',
          subjectId: vm.id,
          summary: `VM ${vm.name} did not boot: ${reason}`,
          detail: { vmName: vm.name, imageId: vm.imageId, hostId: vm.hostId, reason },
        })
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed'));
    },
  });
  const vmService = vms;
  const alerts = new AlertStore(db);
  const detection = new DetectionService({
    events: securityEvents,
    alerts,
    audit,
    log: log.child({ component: 'detection' }),
    responder: detectionResponder({ db, vms: vmService, users, snapshots }),
    progress: new DetectionProgress(db),
    ...(process.env['RAMPART_DETECTION_RULES'] ? { rulesFile: process.env['RAMPART_DETECTION_RULES'] } : {}),
  });
  // Detection is singleton work: the leader's (below), which sees every replica's events.
  // The compliance benchmark: on a schedule (RAMPART_COMPLIANCE_INTERVAL_SECONDS, 0 = off) and on demand.
  const compliance = new ComplianceService({
    deps: {
      db,
      hardening: (vmId) => vmService.hardening(vmId),
      firewallFor: (hostId) => networks.firewallFor(hostId, 0),
      portIntents: (vmId) => networks.portIntents(vmId),
      quotaLimits: (tenantId) => quotas.limits(tenantId),
      masterKey: {
        source: images.master.source,
        ...(images.master.path ? { path: images.master.path } : {}),
      },
      uid: process.getuid?.() ?? 0,
    },
    verifyAudit: () => audit.verify(),
    alerts,
    log: log.child({ component: 'compliance' }),
  });
  securityState = { alerts, compliance };
  // A running VM whose guest agent went silent becomes a vm.heartbeat_lost event.
  const heartbeats = new HeartbeatWatch({
    db,
    record: (event) => securityEvents.record(event),
    log: log.child({ component: 'heartbeats' }),
    lostAfterMs: heartbeatLostAfterMs(process.env),
  });
  // Singleton loops run on one server replica only: the holder of the leader lease (a PostgreSQL
  // advisory lock; on SQLite this server, at once). Another replica takes over when the leader goes.
  // Remote hosts that lost the server: suspected, then failed once their lease expired, and their
  // restartable VMs started elsewhere (host-failover.ts; the hosts fence themselves first).
  const failover = new HostFailover({
    db,
    vms: vmService,
    audit,
    securityEvents,
    log: log.child({ component: 'host-failover' }),
    leaseSeconds: config.hostLeaseSeconds,
  });
  const lease = new LeaderLease(db, { name: 'singletons', log: log.child({ component: 'leader-lease' }) });
  // Periodic audit checkpoints are singleton work too (the leader's, once the lease is settled).
  audit.periodicCheckpoints = false;
  lease.on('change', (leader) => {
    audit.periodicCheckpoints = leader;
    if (leader) {
      detection.start();
      compliance.start(complianceIntervalSeconds());
      heartbeats.start();
      failover.start();
    } else {
      void detection.stop();
      compliance.stop();
      heartbeats.stop();
      failover.stop();
    }
  });
  lease.start();
  // Kernel trouble on a guest console (oops, panic, segfaults, OOM) becomes guest.console events.
  const consoleWatch = new ConsoleWatch({
    vmOf: (vmId) =>
      db.selectFrom('vms').select(['id', 'name', 'tenantId']).where('id', '=', vmId).executeTakeFirst(),
    record: (event) => securityEvents.record(event),
    log: log.child({ component: 'console-watch' }),
  });

  // Agent telemetry: spoofing drops, denied flows and VM samples (security events and charts).
  const vmSamples = new VmSampleStore();
  const telemetry = new TelemetryIngest({
    db,
    events: securityEvents,
    samples: vmSamples,
    log: log.child({ component: 'telemetry' }),
  });
  const pruneSamples = setInterval(() => {
    void db
      .selectFrom('vms')
      .select('id')
      .execute()
      .then((rows) => vmSamples.retain(new Set(rows.map((r) => r.id))))
      .catch(() => undefined);
  }, 600_000);
  pruneSamples.unref();

  fleet.on('connected', (connection, host) => {
    metrics.agentConnected.set(fleet.connectedCount);
    connection.on('status', (status) => vmService.onStatus(status, host.hostId));
    connection.on('console', (vmId, data) => {
      consoleHub.publish(vmId, data);
      consoleRelay.publish(vmId, data);
      consoleWatch.feed(vmId, data);
    });
    connection.on('event', (event) => {
      if (event.kind === TELEMETRY_EVENT_KIND) {
        void telemetry.ingest(host.hostId, event.data);
        return;
      }
      log.info({ kind: event.kind, vmId: event.vmId, data: event.data }, 'host event');
      // Someone changed the host's ruleset by hand (or another tool did): repaired, and worth a look.
      if (event.kind === 'firewall.drift')
        void securityEvents
          .record({
            kind: 'host.firewall_drift',
            severity: 'high',
            tenantId: null,
            subjectType: 'host',
            subjectId: host.hostId,
            summary: `the firewall of host ${host.hostname} had drifted from its intent and was repaired`,
            detail: { differences: event.data.differences ?? [] },
          })
          .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed'));
    });
    void (async () => {
      await recordHostHello(db, host, replicas.id);
      await replicas.linkedHere(host.hostId);
      await vmService.syncHost(host.hostId, connection);
      await volumes.resumeDeletes(host.hostId);
      await snapshots.resumeDeletes(host.hostId);
    })().catch((error: unknown) => log.error({ err: (error as Error).message }, 'host sync failed'));
  });
  fleet.on('disconnected', (host) => {
    metrics.agentConnected.set(fleet.connectedCount);
    // A new link of the same host may have said hello already (here, or on another replica): it
    // stays online.
    if (fleet.localConnection(host.hostId)) return;
    void (async () => {
      if (!(await replicas.unlink(host.hostId))) {
        log.info({ hostId: host.hostId }, 'host link closed here; it is linked to another replica now');
        return;
      }
      const state = await markHostDisconnected(db, host.hostId);
      log.warn({ hostId: host.hostId, hostname: host.hostname, state }, 'host link lost');
      await securityEvents.record({
        kind: 'host.heartbeat_lost',
        severity: 'high',
        tenantId: null,
        subjectType: 'host',
        subjectId: host.hostId,
        summary: `host ${host.hostname} lost its connection to the server`,
        detail: {
          hostId: host.hostId,
          hostname: host.hostname,
          lastSeenAt: new Date().toISOString(),
          missed: 1,
        },
      });
    })().catch((error: unknown) =>
      log.error({ err: (error as Error).message }, 'host link loss not recorded'),
    );
  });
  // Until an agent says hello in this run, no host is known to be online, except the hosts linked to
  // another live replica (left alone). Remote hosts are suspected from now on (their lease counts
  // from this start).
  const linkedElsewhere = replicas.linkedElsewhere();
  const remoteHosts = [...(await fencingHosts(db))].filter((id) => !linkedElsewhere.includes(id));
  const untouched = [...remoteHosts, ...linkedElsewhere];
  await db
    .updateTable('hosts')
    .set({ state: 'offline' })
    .$if(untouched.length > 0, (q) => q.where('id', 'not in', untouched))
    .execute();
  if (remoteHosts.length > 0)
    await db
      .updateTable('hosts')
      .set({ state: 'suspected', lastSeenAt: new Date().toISOString() })
      .where('id', 'in', remoteHosts)
      .where('state', '!=', 'failed')
      .execute();
  fleet.start();
  // Remote hosts (RAMPART_AGENT_LISTEN): the host CA, join tokens and the TLS listener agents dial.
  const remote = await startAgentListener(
    config,
    db,
    fleet,
    log.child({ component: 'agent-listener' }),
    (hostId, hostname, fenced) => {
      log.warn({ hostId, hostname, fencedAt: fenced.at, vmIds: fenced.vmIds }, 'host had fenced itself');
      void securityEvents
        .record({
          kind: 'host.fenced',
          severity: 'high',
          tenantId: null,
          subjectType: 'host',
          subjectId: hostId,
          summary: `host ${hostname} lost the server for longer than its lease and killed its ${fenced.vmIds.length} VM(s)`,
          detail: { hostId, hostname, fencedAt: fenced.at, vmIds: fenced.vmIds },
        })
        .catch((error: unknown) => log.error({ err: (error as Error).message }, 'security event failed'));
    },
    replicas,
    changes,
  );

  const app = await buildApp(
    {
      db,
      vms: vmService,
      consoleHub,
      vmSamples,
      metrics,
      authenticator,
      users,
      roles,
      tenants,
      audit,
      securityEvents,
      alerts,
      compliance,
      images,
      networks,
      volumes,
      snapshots,
      backups,
      quotas,
      overcommit: config.overcommit,
      version: RAMPART_VERSION,
      enrollment: remote.enrollment,
    },
    log,
    { rateLimit: config.rateLimit, trustedProxies: config.trustedProxies },
  );
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  process.stdout.write(
    `Rampart ${RAMPART_VERSION} listening on http://${host}:${port} (data in ${config.dataDir})\n`,
  );
  if (bootstrap.oneTimePassword) {
    process.stdout.write(
      `First start: user ${ADMIN_USERNAME} created with a one-time password (shown only now; you must change it at the first login):\n\n  ${bootstrap.oneTimePassword}\n\nLog in with: RAMPART_URL=http://${host}:${port} rampart login --username ${ADMIN_USERNAME}\n`,
    );
  } else if (bootstrap.created) {
    process.stdout.write(
      `First start: user ${ADMIN_USERNAME} created with the password from RAMPART_ADMIN_PASSWORD\n`,
    );
  } else {
    process.stdout.write(
      `Log in with: rampart login (lost the ${ADMIN_USERNAME} password? rampart server --reset-admin-password)\n`,
    );
  }

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down (the agent and its VMs keep running)');
    fleet.stop();
    remote.listener?.stop();
    vmService.stopTimers();
    failover.stop();
    compliance.stop();
    heartbeats.stop();
    // Its progress mark saved before the database closes: the next engine goes on from there.
    const detectionStopped = detection.stop();
    images.stop();
    void app
      .close()
      .then(() => audit.close())
      .then(() => forwarding.stop())
      .then(() => consoleRelay.stop())
      .then(() => replicas.stop())
      .then(() => lease.stop())
      .then(() => eventDelivery?.stop())
      .then(() => changes.stop())
      .then(() => securityEvents.flush())
      .then(() => detectionStopped)
      .then(() => db.destroy())
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
