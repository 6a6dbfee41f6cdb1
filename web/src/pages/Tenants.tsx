/** Tenants you may see (all of them for platform readers); create one with platform:tenant:create. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { List, Tenant } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { when } from '../format.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Tenants() {
  const auth = useAuth();
  const tenants = useApi<List<Tenant>>('/v1/tenants', { tenant: false });
  const action = useAction(() => {
    tenants.reload();
    void auth.reload();
  });
  const [name, setName] = useState('');
  return (
    <>
      <h1>Tenants</h1>
      <Notice error={tenants.error ?? action.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">MFA for admins</th>
              <th scope="col">Dedicated hosts</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(tenants.data?.items ?? []).map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.requireMfaForAdmins ? 'required' : 'optional'}</td>
                <td>{t.dedicatedHosts ? 'yes' : 'no'}</td>
                <td>{when(t.createdAt)}</td>
                <td>
                  {auth.tenant !== t.name && (
                    <button type="button" className="small" onClick={() => auth.chooseTenant(t.name)}>
                      Switch to
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {auth.can('platform:tenant:create') && (
        <form
          className="card inline-form"
          aria-label="Create tenant"
          onSubmit={(e) => {
            e.preventDefault();
            void action
              .run(() => api('POST', '/v1/tenants', { name }, { tenant: false }))
              .then((ok) => ok && setName(''));
          }}
        >
          <h2>New tenant</h2>
          <label>
            Name
            <input
              required
              pattern="[a-z0-9][a-z0-9\-]{0,62}"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
          </label>
          <button type="submit" className="primary" disabled={action.busy}>
            Create
          </button>
        </form>
      )}
    </>
  );
}
