/** The tenant's VMs, filtered by name and state; "Create VM" only for those who may. */
import { useState } from 'react';
import type { List, Vm } from '../api/types.js';
import { useAuth } from '../auth.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { Notice } from '../components/Notice.js';
import { SelectField } from '../components/SelectField.js';
import { Badge } from '../components/StateBadge.js';
import { Link } from '../router.js';
import { useApi } from '../use-api.js';
import { ago } from '../format.js';

const STATES = ['running', 'stopped', 'starting', 'stopping', 'paused', 'pending', 'error', 'deleting'];

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
        <Field label="Name" value={name} onChange={setName} placeholder="filter by name" />
        <SelectField label="State" value={state} onChange={setState} options={STATES} blank="any" />
      </div>
      <Notice error={vms.error} />
      <DataTable
        caption="VMs"
        rows={items}
        rowKey={(vm) => vm.id}
        empty={vms.data && 'No VMs match.'}
        columns={[
          { header: 'Name', cell: (vm) => <Link href={`/vms/${vm.name}`}>{vm.name}</Link> },
          { header: 'State', cell: (vm) => <Badge value={vm.state} /> },
          { header: 'Flavor', cell: (vm) => vm.flavor.name },
          { header: 'Image', cell: (vm) => vm.image.name },
          { header: 'IPs', cell: (vm) => vm.guestIps.join(', ') || '—' },
          { header: 'Heartbeat', cell: (vm) => (vm.lastHeartbeatAt ? ago(vm.lastHeartbeatAt) : '—') },
        ]}
      />
    </>
  );
}
