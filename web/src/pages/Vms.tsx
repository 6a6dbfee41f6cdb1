/** The tenant's VMs, filtered by name and state; "Create VM" only for those who may. */
import { useState } from 'react';
import type { List, Vm } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { Link } from '../router.js';
import { useApi } from '../use-api.js';
import { ago } from '../format.js';

export function Vms() {
  const { can } = useAuth();
  const vms = useApi<List<Vm>>('/v1/vms', { refreshMs: 3000 });
  const [name, setName] = useState('');
  const [state, setState] = useState('');
  const items = (vms.data?.items ?? []).filter(
    (vm) => vm.name.includes(name.trim()) && (!state || vm.state === state),
  );
  return (
    <>
      <div className="page-head">
        <h1>VMs</h1>
        {can('vm:create') && (
          <Link href="/vms/new" className="button primary">
            Create VM
          </Link>
        )}
      </div>
      <div className="filters" role="search">
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="filter by name" />
        </label>
        <label>
          State
          <select value={state} onChange={(e) => setState(e.target.value)}>
            <option value="">any</option>
            {['running', 'stopped', 'starting', 'stopping', 'paused', 'pending', 'error', 'deleting'].map(
              (s) => (
                <option key={s}>{s}</option>
              ),
            )}
          </select>
        </label>
      </div>
      <Notice error={vms.error} />
      <div className="table-wrap">
        <table>
          <caption className="visually-hidden">VMs</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">Flavor</th>
              <th scope="col">Image</th>
              <th scope="col">IPs</th>
              <th scope="col">Heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {items.map((vm) => (
              <tr key={vm.id}>
                <td>
                  <Link href={`/vms/${vm.name}`}>{vm.name}</Link>
                </td>
                <td>
                  <Badge value={vm.state} />
                </td>
                <td>{vm.flavor.name}</td>
                <td>{vm.image.name}</td>
                <td>{vm.guestIps.join(', ') || '—'}</td>
                <td>{vm.lastHeartbeatAt ? ago(vm.lastHeartbeatAt) : '—'}</td>
              </tr>
            ))}
            {vms.data && items.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No VMs match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </>
  );
}
