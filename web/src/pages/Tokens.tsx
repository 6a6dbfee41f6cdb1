/** Your API tokens: list, create (the secret is shown once), revoke. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { ApiToken } from '../api/types.js';
import { CreateForm } from '../components/CreateForm.js';
import { DangerButton } from '../components/DangerButton.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { NameField } from '../components/NameField.js';
import { Notice } from '../components/Notice.js';
import { when } from '../format.js';
import { useResource } from '../use-resource.js';

export function Tokens() {
  const tokens = useResource<ApiToken>('/v1/tokens', { tenant: false });
  const [name, setName] = useState('');
  const [days, setDays] = useState('30');
  const [secret, setSecret] = useState<string | null>(null);
  return (
    <>
      <h1>API tokens</h1>
      <Notice error={tokens.error} />
      {secret && (
        <div className="card secret" role="status">
          <p>The token's secret, shown only now:</p>
          <code className="break">{secret}</code>
          <button type="button" className="small" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      )}
      <DataTable
        rows={tokens.items}
        rowKey={(t) => t.id}
        columns={[
          { header: 'Name', cell: (t) => t.name },
          { header: 'Tenant', cell: (t) => t.tenant.name },
          { header: 'Expires', cell: (t) => when(t.expiresAt) },
          { header: 'Last used', cell: (t) => when(t.lastUsedAt) },
          { header: 'State', cell: (t) => (t.revoked ? 'revoked' : 'active') },
        ]}
        actions={(t) =>
          !t.revoked && (
            <DangerButton
              label={`Revoke ${t.name}`}
              onClick={() =>
                void tokens.run(() => api('DELETE', `/v1/tokens/${t.id}`, undefined, { tenant: false }))
              }
            >
              Revoke
            </DangerButton>
          )
        }
      />
      <CreateForm
        permission="token:create"
        noun="API token"
        title="New token"
        resource={tokens}
        create={async () => {
          const created = await api<{ token: string }>('POST', '/v1/tokens', {
            name,
            expiresInDays: Number(days),
          });
          setSecret(created.token);
        }}
      >
        <NameField value={name} onChange={setName} />
        <Field label="Expires in (days)" type="number" min={1} max={365} value={days} onChange={setDays} />
      </CreateForm>
    </>
  );
}
