/** Tenants you may see (all of them for platform readers); create one with platform:tenant:create. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { Tenant } from '../api/types.js';
import { useAuth } from '../auth.js';
import { CreateForm } from '../components/CreateForm.js';
import { DataTable } from '../components/DataTable.js';
import { NameField } from '../components/NameField.js';
import { Notice } from '../components/Notice.js';
import { when } from '../format.js';
import { useResource } from '../use-resource.js';

export function Tenants() {
  const auth = useAuth();
  const tenants = useResource<Tenant>('/v1/tenants', { tenant: false }, () => void auth.reload());
  const [name, setName] = useState('');
  return (
    <>
      <h1>Tenants</h1>
      <Notice error={tenants.error} />
      <DataTable
        rows={tenants.items}
        rowKey={(t) => t.id}
        columns={[
          { header: 'Name', cell: (t) => t.name },
          { header: 'MFA for admins', cell: (t) => (t.requireMfaForAdmins ? 'required' : 'optional') },
          { header: 'Dedicated hosts', cell: (t) => (t.dedicatedHosts ? 'yes' : 'no') },
          { header: 'Created', cell: (t) => when(t.createdAt) },
        ]}
        actions={(t) =>
          auth.tenant !== t.name && (
            <button type="button" className="small" onClick={() => auth.chooseTenant(t.name)}>
              Switch to
            </button>
          )
        }
      />
      <CreateForm
        permission="platform:tenant:create"
        noun="tenant"
        resource={tenants}
        create={() => api('POST', '/v1/tenants', { name }, { tenant: false })}
        reset={() => setName('')}
      >
        <NameField value={name} onChange={setName} />
      </CreateForm>
    </>
  );
}
