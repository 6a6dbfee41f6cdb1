/** The tenant at a glance: VMs by state, quota use, open alerts; for platform admins host capacity and the compliance score. */
import type { ComplianceReport, Host, List, Quota, SecurityAlert, Vm } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Bar } from '../components/Bar.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { Link } from '../router.js';
import { useApi } from '../use-api.js';

const STATES: Vm['state'][] = [
  'running',
  'starting',
  'pending',
  'paused',
  'stopping',
  'stopped',
  'error',
  'deleting',
];

export function Overview() {
  const { can, tenant } = useAuth();
  const platformAlerts = can('platform:security:read');
  const vms = useApi<List<Vm>>(can('vm:read') ? '/v1/vms' : null, { refreshMs: 5000 });
  const hosts = useApi<List<Host>>(can('platform:host:read') ? '/v1/hosts' : null, { tenant: false });
  const quota = useApi<Quota>(can('quota:read') && tenant ? `/v1/tenants/${tenant}/quota` : null, {
    tenant: false,
  });
  const alerts = useApi<List<SecurityAlert>>(
    platformAlerts ? '/v1/platform/security/alerts' : can('security:read') ? '/v1/security/alerts' : null,
    { query: { status: 'open' }, tenant: !platformAlerts, refreshMs: 10000 },
  );
  // The report exists once a run has finished: ask for it only then (no 404 to show).
  const runs = useApi<List<unknown>>(platformAlerts ? '/v1/platform/compliance/history' : null, {
    tenant: false,
    query: { limit: '1' },
  });
  const compliance = useApi<ComplianceReport>(
    runs.data && runs.data.items.length > 0 ? '/v1/platform/compliance/report' : null,
    { tenant: false },
  );
  const byState = new Map<string, number>();
  for (const vm of vms.data?.items ?? []) byState.set(vm.state, (byState.get(vm.state) ?? 0) + 1);
  return (
    <>
      <h1>Overview</h1>
      <div className="grid">
        {can('vm:read') && (
          <section className="card" aria-labelledby="ov-vms">
            <h2 id="ov-vms">VMs by state</h2>
            <Notice error={vms.error} />
            <ul className="stat-list">
              {STATES.filter((s) => byState.has(s)).map((s) => (
                <li key={s}>
                  <Badge value={s} /> <strong>{byState.get(s)}</strong>
                </li>
              ))}
              {vms.data && vms.data.items.length === 0 && <li className="muted">No VMs yet.</li>}
            </ul>
            <Link href="/vms">All VMs →</Link>
          </section>
        )}
        {quota.data && (
          <section className="card" aria-labelledby="ov-quota">
            <h2 id="ov-quota">Quota ({quota.data.tenant.name})</h2>
            <Bar label="VMs" used={quota.data.resources.vms.usage} limit={quota.data.resources.vms.limit} />
            <Bar
              label="vCPUs"
              used={quota.data.resources.vcpus.usage}
              limit={quota.data.resources.vcpus.limit}
            />
            <Bar
              label="Memory"
              used={quota.data.resources.memoryMiB.usage}
              limit={quota.data.resources.memoryMiB.limit}
              unit=" MiB"
            />
            <Bar
              label="Disk"
              used={quota.data.resources.diskGiB.usage}
              limit={quota.data.resources.diskGiB.limit}
              unit=" GiB"
            />
            <Link href="/quotas">All quotas →</Link>
          </section>
        )}
        {alerts.data && (
          <section className="card" aria-labelledby="ov-alerts">
            <h2 id="ov-alerts">Open alerts</h2>
            <p className="big">{alerts.data.items.length}</p>
            <ul className="plain">
              {alerts.data.items.slice(0, 5).map((a) => (
                <li key={a.id}>
                  <Badge value={a.severity} kind="severity" /> {a.summary}
                </li>
              ))}
            </ul>
            <Link href="/alerts">Security alerts →</Link>
          </section>
        )}
        {platformAlerts && (
          <section className="card" aria-labelledby="ov-compliance">
            <h2 id="ov-compliance">Compliance</h2>
            {compliance.data ? (
              <>
                <p className="big">{Math.round(compliance.data.score)}%</p>
                <p className="muted">
                  {compliance.data.passed} passed, {compliance.data.failed} failed (
                  {new Date(compliance.data.finishedAt).toLocaleString()})
                </p>
              </>
            ) : (
              <p className="muted">
                {runs.data && runs.data.items.length === 0 ? 'No report yet.' : 'Loading…'}
              </p>
            )}
            <Link href="/compliance">Report →</Link>
          </section>
        )}
        {hosts.data && (
          <section className="card wide" aria-labelledby="ov-hosts">
            <h2 id="ov-hosts">Host capacity</h2>
            {hosts.data.items.map((h) => (
              <div key={h.id} className="host">
                <h3>
                  {h.hostname} <Badge value={h.state} /> <span className="muted">{h.accelerator}</span>
                  {h.maintenance && <Badge value="maintenance" />}
                </h3>
                <Bar label="vCPUs" used={h.allocated.vcpus} limit={h.capacity.vcpusAllocatable} />
                <Bar
                  label="Memory"
                  used={h.allocated.memoryMiB}
                  limit={h.capacity.memoryMiBAllocatable}
                  unit=" MiB"
                />
              </div>
            ))}
          </section>
        )}
      </div>
    </>
  );
}
