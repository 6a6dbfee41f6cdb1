/**
 * Wires remote hosts into the server: with RAMPART_AGENT_LISTEN set, opens the host CA (created on
 * first start), makes the listener's server certificate for the advertised host, and starts the TLS
 * listener; join tokens and revocation work through the HostEnrollment either way (without a listener
 * nobody can join).
 */
import type { Logger } from '../../common/logger.js';
import type { AgentFleet } from '../agent-link/agent-fleet.js';
import type { ServerConfig } from '../config.js';
import type { Db } from '../store/database.js';
import { AgentListener } from './agent-listener.js';
import { HostCa } from './host-ca.js';
import { HostEnrollment } from './host-enrollment.js';
import { recordLeaseRenewals } from './host-failover.js';
import type { ReplicaRegistry } from './replica-registry.js';
import type { ChangeFeed } from './change-feed.js';

const HOST_REVOKED_TOPIC = 'host-revoked.';

export async function startAgentListener(
  config: ServerConfig,
  db: Db,
  fleet: AgentFleet,
  log: Logger,
  onFenced?: (hostId: string, hostname: string, fenced: { at: string; vmIds: string[] }) => void,
  replicas?: ReplicaRegistry,
  feed?: ChangeFeed,
): Promise<{ enrollment: HostEnrollment; listener: AgentListener | null }> {
  const settings = config.agentListener;
  if (!settings)
    return { enrollment: new HostEnrollment({ db, ca: null, agentEndpoint: null }), listener: null };
  const ca = await HostCa.open(config.dataDir);
  // A joining host learns every live replica's listener (the replicas share the CA: see README).
  const enrollment = new HostEnrollment({
    db,
    ca,
    agentEndpoint: null,
    channelFor: (hostId) => fleet.connectionFor(hostId),
    ...(replicas ? { agentEndpoints: () => replicas.agentEndpoints() } : {}),
  });
  const server = await ca.serverCertificate(settings.endpointHost);
  const listener = new AgentListener({
    host: settings.host,
    port: settings.port,
    ca,
    serverKey: server.key,
    serverCertificate: server.certificate,
    enrollment,
    fleet,
    log,
    heartbeatSeconds: settings.heartbeatSeconds,
    leaseSeconds: config.hostLeaseSeconds,
    certificateRenewWithinMs: config.hostCertRenewDays * 86_400_000,
    onRenewed: (hostIds) =>
      void recordLeaseRenewals(db, hostIds).catch((error: unknown) =>
        log.error({ err: (error as Error).message }, 'could not record lease renewals'),
      ),
    ...(onFenced ? { onFenced } : {}),
  });
  const port = await listener.start();
  const host = settings.endpointHost.includes(':') ? `[${settings.endpointHost}]` : settings.endpointHost;
  const endpoint = `${host}:${settings.endpointPort ?? port}`;
  enrollment.setAgentEndpoint(endpoint);
  await replicas?.setAgentEndpoint(endpoint);
  // A revocation closes the host's connection on whichever replica holds it: announced to all.
  enrollment.closeHost = (hostId) => {
    listener.closeHost(hostId);
    void feed?.notify(`${HOST_REVOKED_TOPIC}${hostId}`).catch(() => undefined);
  };
  feed?.on('change', (topic) => {
    if (topic.startsWith(HOST_REVOKED_TOPIC)) listener.closeHost(topic.slice(HOST_REVOKED_TOPIC.length));
    else if (topic === '*') void listener.revalidate();
  });
  log.info(
    { listen: `${settings.host}:${port}`, endpoint },
    'agent listener ready (TLS, client certificates)',
  );
  process.stdout.write(`Agent listener on ${settings.host}:${port} (remote hosts dial ${endpoint})\n`);
  return { enrollment, listener };
}
