/** Your API tokens: list, create (the secret is shown once), revoke. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { ApiToken, List } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { when } from '../format.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Tokens() {
  const { can } = useAuth();
  const tokens = useApi<List<ApiToken>>('/v1/tokens', { tenant: false });
  const action = useAction(tokens.reload);
  const [name, setName] = useState('');
  const [days, setDays] = useState('30');
  const [secret, setSecret] = useState<string | null>(null);
  return (
    <>
      <h1>API tokens</h1>
      <Notice error={tokens.error ?? action.error} />
      {secret && (
        <div className="card secret" role="status">
          <p>The token's secret, shown only now:</p>
          <code className="break">{secret}</code>
          <button type="button" className="small" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      )}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Tenant</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">State</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(tokens.data?.items ?? []).map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.tenant.name}</td>
                <td>{when(t.expiresAt)}</td>
                <td>{when(t.lastUsedAt)}</td>
                <td>{t.revoked ? 'revoked' : 'active'}</td>
                <td>
                  {!t.revoked && (
                    <button
                      type="button"
                      className="danger small"
                      aria-label={`Revoke ${t.name}`}
                      onClick={() =>
                        void action.run(() =>
                          api('DELETE', `/v1/tokens/${t.id}`, undefined, { tenant: false }),
                        )
                      }
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {can('token:create') && (
        <form
          className="card inline-form"
          aria-label="Create API token"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(async () => {
              const created = await api<{ token: string }>('POST', '/v1/tokens', {
                name,
                expiresInDays: Number(days),
              });
              setSecret(created.token);
            });
          }}
        >
          <h2>New token</h2>
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
            Expires in (days)
            <input type="number" min={1} max={365} value={days} onChange={(e) => setDays(e.target.value)} />
          </label>
          <button type="submit" className="primary" disabled={action.busy}>
            Create
          </button>
        </form>
      )}
    </>
  );
}
