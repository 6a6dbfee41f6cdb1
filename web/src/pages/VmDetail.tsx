/**
 * One VM: its facts (state, IPs, heartbeat, host), the actions the user may take in its state, the
 * live console, CPU and network charts from its samples, and its ports (with isolation release).
 */
import { useEffect, useRef, useState } from 'react';
import { api } from '../api/client.js';
import { loadSamples } from '../api/samples.js';
import type { List, Port, Vm, VmSample } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Card } from '../components/Card.js';
import { DataTable } from '../components/DataTable.js';
import { LineChart } from '../components/LineChart.js';
import { announce } from '../components/LiveRegion.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { Terminal } from '../components/Terminal.js';
import { ago, when } from '../format.js';
import { navigate } from '../router.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

interface VmAction {
  action: 'start' | 'stop' | 'reboot' | 'pause' | 'resume';
  label: string;
  from: Vm['state'][];
}

const ACTIONS: VmAction[] = [
  { action: 'start', label: 'Start', from: ['stopped', 'error'] },
  { action: 'stop', label: 'Stop', from: ['running', 'paused', 'starting'] },
  { action: 'reboot', label: 'Reboot', from: ['running'] },
  { action: 'pause', label: 'Pause', from: ['running'] },
  { action: 'resume', label: 'Resume', from: ['paused'] },
];

/** The network charts: each a tx and an rx series of the samples. */
const TRAFFIC_CHARTS: { title: string; unit: string; tx: 'txPps' | 'txBps'; rx: 'rxPps' | 'rxBps' }[] = [
  { title: 'Network packets', unit: ' pps', tx: 'txPps', rx: 'rxPps' },
  { title: 'Network bytes', unit: ' B/s', tx: 'txBps', rx: 'rxBps' },
];

/** How often the charts ask for new samples while the page is open. */
const SAMPLES_REFRESH_MS = 5000;

export function VmDetail({ vmRef }: { vmRef: string }) {
  const { can } = useAuth();
  const vm = useApi<Vm>(`/v1/vms/${vmRef}`, { refreshMs: 2000 });
  const ports = useApi<List<Port>>(`/v1/vms/${vmRef}/ports`, { refreshMs: 10000 });
  const [samples, setSamples] = useState<VmSample[] | null>(null);
  const action = useAction(() => {
    vm.reload();
    ports.reload();
  });
  const id = vm.data?.id;
  const canEvents = can('security:read');
  const state = vm.data?.state;
  const lastState = useRef<string | undefined>(undefined);

  // A state change (the VM started, stopped, was paused by a rule) is announced to screen readers.
  useEffect(() => {
    if (state && lastState.current && state !== lastState.current)
      announce(`VM ${vm.data?.name ?? vmRef} is now ${state}`);
    lastState.current = state;
  }, [state]);

  useEffect(() => {
    if (!id) return;
    let live = true;
    const load = () =>
      loadSamples(id, canEvents)
        .then((s) => live && setSamples(s))
        .catch(() => live && setSamples([]));
    void load();
    const timer = setInterval(() => void load(), SAMPLES_REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [id, canEvents]);

  if (!vm.data) return <Notice error={vm.error}>Loading…</Notice>;
  const v = vm.data;
  const isolated = (ports.data?.items ?? []).some((p) => p.quarantined);
  const remove = () => {
    if (!confirm(`Delete VM ${v.name}? Its root disk is deleted too.`)) return;
    void action.run(async () => {
      await api('DELETE', `/v1/vms/${v.id}`);
      navigate('/vms');
    });
  };
  return (
    <>
      <div className="page-head">
        <h1>
          {v.name} <Badge value={v.state} />
        </h1>
        <div className="actions" role="group" aria-label="VM actions">
          {ACTIONS.filter((a) => can(`vm:${a.action}`) && a.from.includes(v.state)).map((a) => (
            <button
              key={a.action}
              type="button"
              disabled={action.busy}
              onClick={() => void action.run(() => api('POST', `/v1/vms/${v.id}/${a.action}`, {}))}
            >
              {a.label}
            </button>
          ))}
          {can('vm:delete') && v.state !== 'deleting' && (
            <button type="button" className="danger" disabled={action.busy} onClick={remove}>
              Delete
            </button>
          )}
        </div>
      </div>
      <Notice error={action.error ?? vm.error} />
      {v.error && <Notice error={`VM error: ${v.error}`} />}
      <div className="grid">
        <Card id="vm-facts" title="Details">
          <dl className="facts">
            <dt>Guest IPs</dt>
            <dd data-testid="guest-ips">{v.guestIps.join(', ') || '—'}</dd>
            <dt>Heartbeat</dt>
            <dd data-testid="heartbeat">
              {v.lastHeartbeatAt ? `${ago(v.lastHeartbeatAt)} (${when(v.lastHeartbeatAt)})` : 'none yet'}
            </dd>
            <dt>Guest uptime</dt>
            <dd>{v.guestUptimeSeconds !== null ? `${Math.round(v.guestUptimeSeconds)} s` : '—'}</dd>
            <dt>Flavor</dt>
            <dd>
              {v.flavor.name} ({v.vcpus} vCPU, {v.memoryMiB} MiB, {v.diskGiB} GiB)
            </dd>
            <dt>Image</dt>
            <dd>{v.image.name}</dd>
            <dt>Accelerator</dt>
            <dd>{v.accelerator ?? '—'}</dd>
            <dt>Boot time</dt>
            <dd>{v.bootMs !== null ? `${v.bootMs} ms` : '—'}</dd>
            <dt>Restarts</dt>
            <dd>
              {v.restartCount} (policy {v.restartPolicy})
            </dd>
            <dt>Created</dt>
            <dd>{when(v.createdAt)}</dd>
          </dl>
        </Card>
        <Card id="vm-charts" title="Usage">
          {samples === null ? (
            <p className="muted">Loading samples…</p>
          ) : samples.length === 0 ? (
            <p className="muted">No samples yet.</p>
          ) : (
            <>
              <LineChart
                title="CPU"
                unit="%"
                series={[{ name: 'CPU', values: samples.map((s) => s.cpuPercent), className: 's1' }]}
              />
              {TRAFFIC_CHARTS.map((c) => (
                <LineChart
                  key={c.title}
                  title={c.title}
                  unit={c.unit}
                  series={[
                    { name: 'tx', values: samples.map((s) => s[c.tx]), className: 's1' },
                    { name: 'rx', values: samples.map((s) => s[c.rx]), className: 's2' },
                  ]}
                />
              ))}
            </>
          )}
        </Card>
      </div>
      {can('vm:console') && v.state !== 'deleting' && <Terminal vmRef={v.id} canType={can('vm:console')} />}
      {ports.data && ports.data.items.length > 0 && (
        <Card
          id="vm-ports"
          title="Ports"
          actions={
            can('security:respond') && (
              <button
                type="button"
                className={isolated ? 'primary' : 'danger'}
                onClick={() =>
                  void action.run(() => api('PUT', `/v1/vms/${v.id}/isolation`, { isolated: !isolated }))
                }
              >
                {isolated ? 'Release isolation' : 'Isolate'}
              </button>
            )
          }
        >
          <DataTable
            rows={ports.data.items}
            rowKey={(p) => p.id}
            columns={[
              { header: 'Network', cell: (p) => p.networkName },
              { header: 'IPv4', cell: (p) => p.ipv4 },
              { header: 'MAC', cell: (p) => <code>{p.mac}</code> },
              {
                header: 'Security groups',
                cell: (p) => p.securityGroups.map((g) => g.name).join(', ') || 'none',
              },
              { header: 'Isolated', cell: (p) => (p.quarantined ? 'yes' : 'no') },
            ]}
          />
        </Card>
      )}
    </>
  );
}
