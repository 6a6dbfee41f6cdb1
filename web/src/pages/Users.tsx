/** The tenant's members (member:read; add and remove with member:create/delete) and, for platform admins, all users. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { List, Member, User } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Card } from '../components/Card.js';
import { DangerButton } from '../components/DangerButton.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { InlineForm } from '../components/InlineForm.js';
import { Notice } from '../components/Notice.js';
import { when } from '../format.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Users() {
  const { can, tenant } = useAuth();
  const members = useApi<List<Member>>(
    can('member:read') && tenant ? `/v1/tenants/${tenant}/members` : null,
    { tenant: false },
  );
  const users = useApi<List<User>>(can('platform:user:read') ? '/v1/users' : null, { tenant: false });
  const action = useAction(() => {
    members.reload();
    users.reload();
  });
  const [user, setUser] = useState('');
  const [role, setRole] = useState('member');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  return (
    <>
      <h1>Users</h1>
      <Notice error={action.error ?? members.error ?? users.error} />
      {members.data && (
        <Card id="members-title" title={`Members of ${tenant}`}>
          <DataTable
            rows={members.data.items}
            rowKey={(m) => m.user.id}
            columns={[
              { header: 'User', cell: (m) => m.user.username },
              { header: 'Roles', cell: (m) => m.roles.join(', ') },
            ]}
            actions={
              can('member:delete')
                ? (m) => (
                    <DangerButton
                      label={`Remove ${m.user.username}`}
                      onClick={() =>
                        void action.run(() =>
                          api('DELETE', `/v1/tenants/${tenant}/members/${m.user.username}`, undefined, {
                            tenant: false,
                          }),
                        )
                      }
                    >
                      Remove
                    </DangerButton>
                  )
                : undefined
            }
          />
          {can('member:create') && (
            <InlineForm
              nested
              label="Add member"
              submit="Add member"
              busy={action.busy}
              onSubmit={() =>
                void action.run(() =>
                  api('POST', `/v1/tenants/${tenant}/members`, { user, role }, { tenant: false }),
                )
              }
            >
              <Field label="User" required value={user} onChange={setUser} />
              <Field label="Role" required value={role} onChange={setRole} />
            </InlineForm>
          )}
        </Card>
      )}
      {users.data && (
        <Card id="users-title" title="All users">
          <DataTable
            rows={users.data.items}
            rowKey={(u) => u.id}
            columns={[
              { header: 'Username', cell: (u) => u.username },
              { header: 'MFA', cell: (u) => (u.mfaEnabled ? 'on' : 'off') },
              { header: 'Disabled', cell: (u) => (u.disabled ? 'yes' : 'no') },
              { header: 'Password changed', cell: (u) => when(u.passwordChangedAt) },
            ]}
          />
          {can('platform:user:create') && (
            <InlineForm
              nested
              label="Create user"
              submit="Create user"
              busy={action.busy}
              onSubmit={() =>
                void action.run(() => api('POST', '/v1/users', { username, password }, { tenant: false }))
              }
            >
              <Field label="Username" required value={username} onChange={setUsername} />
              <Field
                label="One-time password"
                type="password"
                autoComplete="new-password"
                required
                value={password}
                onChange={setPassword}
              />
            </InlineForm>
          )}
        </Card>
      )}
    </>
  );
}
