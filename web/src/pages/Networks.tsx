/** The tenant's networks: list, create (network:create), delete (network:delete). */
import { useState, type FormEvent } from 'react';
import { api } from '../api/client.js';
import type { List, Network } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Networks() {
  const { can } = useAuth();
  const networks = useApi<List<Network>>('/v1/networks');
  const action = useAction(networks.reload);
  const [name, setName] = useState('');
  const [cidr, setCidr] = useState('10.0.0.0/24');
  const create = (event: FormEvent) => {
    event.preventDefault();
    void action.run(() => api('POST', '/v1/networks', { name, cidr })).then((ok) => ok && setName(''));
  };
  return (
    <>
      <h1>Networks</h1>
      <Notice error={networks.error ?? action.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">CIDR</th>
              <th scope="col">Gateway</th>
              <th scope="col">Ports</th>
              <th scope="col">Outbound</th>
              {can('network:delete') && (
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {(networks.data?.items ?? []).map((n) => (
              <tr key={n.id}>
                <td>{n.name}</td>
                <td>{n.cidr}</td>
                <td>{n.gateway}</td>
                <td>
                  {n.ports} / {n.capacity}
                </td>
                <td>{n.outbound ? 'yes' : 'no'}</td>
                {can('network:delete') && (
                  <td>
                    <button
                      type="button"
                      className="danger small"
                      aria-label={`Delete network ${n.name}`}
                      onClick={() => void action.run(() => api('DELETE', `/v1/networks/${n.id}`))}
                    >
                      Delete
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {can('network:create') && (
        <form className="card inline-form" onSubmit={create} aria-label="Create network">
          <h2>New network</h2>
          <label>
            Name
            <input
              required
              pattern="[a-z0-9][a-z0-9\-]{0,62}"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
          </label>
          <label>
            CIDR
            <input required value={cidr} onChange={(e) => setCidr(e.target.value)} />
          </label>
          <button type="submit" className="primary" disabled={action.busy}>
            Create
          </button>
        </form>
      )}
    </>
  );
}
