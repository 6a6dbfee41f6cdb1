/** Prometheus metrics of the control plane, in one registry served at /metrics. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  vmBootSeconds: Histogram<'accelerator'>;
  vmsByState: Gauge<'state'>;
  agentConnected: Gauge;
  vmRestarts: Counter<'reason'>;
  portPackets: Gauge<'tenant' | 'vm' | 'port' | 'verdict'>;
  securityAlertsOpen: Gauge<'severity'>;
  complianceScore: Gauge;
}

/** What the security engine reports to /metrics. */
export interface SecuritySample {
  /** Unresolved alerts by severity. */
  alertsOpen: Record<string, number>;
  /** The latest compliance score (0-100); null before the first run. */
  complianceScore: number | null;
}

/** One packet counter of one VM port (`verdict`: accepted, spoof-<reason>, ingress-denied, egress-denied). */
export interface PortPacketSample {
  tenantId: string;
  vmId: string;
  portId: string;
  verdict: string;
  packets: number;
}

export function createMetrics(
  countVmsByState: () => Promise<Record<string, number>>,
  portPackets: () => Promise<PortPacketSample[]> = async () => [],
  security: () => Promise<SecuritySample> = async () => ({ alertsOpen: {}, complianceScore: null }),
): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rampart_server_' });
  return {
    registry,
    httpRequests: new Counter({
      name: 'rampart_http_requests_total',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'rampart_http_request_duration_seconds',
      help: 'HTTP request latency by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    vmBootSeconds: new Histogram({
      name: 'rampart_vm_boot_seconds',
      help: 'Time from QEMU start to the first guest-agent heartbeat',
      labelNames: ['accelerator'],
      buckets: [0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60],
      registers: [registry],
    }),
    vmsByState: new Gauge({
      name: 'rampart_vms',
      help: 'VMs by state',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const [state, count] of Object.entries(await countVmsByState())) this.set({ state }, count);
      },
    }),
    agentConnected: new Gauge({
      name: 'rampart_agent_connected',
      help: 'How many host agents are connected (1 in all-in-one mode while its agent is up)',
      registers: [registry],
    }),
    vmRestarts: new Counter({
      name: 'rampart_vm_restarts_total',
      help: 'VM restarts performed by the restart policy',
      labelNames: ['reason'],
      registers: [registry],
    }),
    portPackets: new Gauge({
      name: 'rampart_port_packets',
      help: 'Packets per VM port as the host firewall counted them (accepted from the guest, anti-spoofing drops by reason, security-group denials); monotonic while the port exists',
      labelNames: ['tenant', 'vm', 'port', 'verdict'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await portPackets())
          this.set({ tenant: s.tenantId, vm: s.vmId, port: s.portId, verdict: s.verdict }, s.packets);
      },
    }),
    securityAlertsOpen: new Gauge({
      name: 'rampart_security_alerts_open',
      help: 'Security alerts not resolved yet (open or acknowledged), by severity',
      labelNames: ['severity'],
      registers: [registry],
      async collect() {
        this.reset();
        const counts = (await security()).alertsOpen;
        for (const severity of ['info', 'low', 'medium', 'high', 'critical'])
          this.set({ severity }, counts[severity] ?? 0);
      },
    }),
    complianceScore: new Gauge({
      name: 'rampart_compliance_score',
      help: 'Score of the latest compliance run (percent of checks passing); absent before the first run',
      registers: [registry],
      async collect() {
        this.reset();
        const score = (await security()).complianceScore;
        if (score !== null) this.set(score);
      },
    }),
  };
}
