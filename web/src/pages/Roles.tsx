/** Roles of the tenant (built-in and custom) with their permissions; create a custom one with role:create. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { Role } from '../api/types.js';
import { CreateForm } from '../components/CreateForm.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { Notice } from '../components/Notice.js';
import { useResource } from '../use-resource.js';

export function Roles() {
  const roles = useResource<Role>('/v1/roles');
  const [name, setName] = useState('');
  const [permissions, setPermissions] = useState('vm:read');
  return (
    <>
      <h1>Roles</h1>
      <Notice error={roles.error} />
      <DataTable
        rows={roles.items}
        rowKey={(r) => r.name}
        columns={[
          { header: 'Name', cell: (r) => r.name },
          { header: 'Kind', cell: (r) => (r.builtIn ? 'built-in' : 'custom') },
          {
            header: 'Permissions',
            className: 'perm-list',
            // Long lists fold away: a row stays one line until opened.
            cell: (r) => (
              <details>
                <summary>
                  {r.permissions.length} permission{r.permissions.length === 1 ? '' : 's'}
                </summary>
                {r.permissions.join(' ')}
              </details>
            ),
          },
        ]}
      />
      <CreateForm
        permission="role:create"
        noun="role"
        resource={roles}
        create={() =>
          api('POST', '/v1/roles', { name, permissions: permissions.split(/[\s,]+/).filter(Boolean) })
        }
      >
        <Field label="Name" required value={name} onChange={setName} />
        <Field label="Permissions (space separated)" required value={permissions} onChange={setPermissions} />
      </CreateForm>
    </>
  );
}
