/** Roles of the tenant (built-in and custom) with their permissions; create a custom one with role:create. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { List, Role } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Roles() {
  const { can } = useAuth();
  const roles = useApi<List<Role>>('/v1/roles');
  const action = useAction(roles.reload);
  const [name, setName] = useState('');
  const [permissions, setPermissions] = useState('vm:read');
  return (
    <>
      <h1>Roles</h1>
      <Notice error={roles.error ?? action.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Permissions</th>
            </tr>
          </thead>
          <tbody>
            {(roles.data?.items ?? []).map((r) => (
              <tr key={r.name}>
                <td>{r.name}</td>
                <td>{r.builtIn ? 'built-in' : 'custom'}</td>
                <td className="perm-list">
                  {/* Long lists fold away: a row stays one line until opened. */}
                  <details>
                    <summary>
                      {r.permissions.length} permission{r.permissions.length === 1 ? '' : 's'}
                    </summary>
                    {r.permissions.join(' ')}
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {can('role:create') && (
        <form
          className="card inline-form"
          aria-label="Create role"
          onSubmit={(e) => {
            e.preventDefault();
            const list = permissions.split(/[\s,]+/).filter(Boolean);
            void action.run(() => api('POST', '/v1/roles', { name, permissions: list }));
          }}
        >
          <h2>New role</h2>
          <label>
            Name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <label>
            Permissions (space separated)
            <input required value={permissions} onChange={(e) => setPermissions(e.target.value)} />
          </label>
          <button type="submit" className="primary" disabled={action.busy}>
            Create
          </button>
        </form>
      )}
    </>
  );
}
