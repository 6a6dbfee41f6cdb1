/** The tenant's members (member:read; add and remove with member:create/delete) and, for platform admins, all users. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { List, Member, User } from '../api/types.js';
import { useAuth } from '../auth.js';
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
        <section className="card" aria-labelledby="members-title">
          <h2 id="members-title">Members of {tenant}</h2>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">User</th>
                  <th scope="col">Roles</th>
                  {can('member:delete') && (
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {members.data.items.map((m) => (
                  <tr key={m.user.id}>
                    <td>{m.user.username}</td>
                    <td>{m.roles.join(', ')}</td>
                    {can('member:delete') && (
                      <td>
                        <button
                          type="button"
                          className="danger small"
                          aria-label={`Remove ${m.user.username}`}
                          onClick={() =>
                            void action.run(() =>
                              api('DELETE', `/v1/tenants/${tenant}/members/${m.user.username}`, undefined, {
                                tenant: false,
                              }),
                            )
                          }
                        >
                          Remove
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {can('member:create') && (
            <form
              className="inline-form"
              aria-label="Add member"
              onSubmit={(e) => {
                e.preventDefault();
                void action.run(() =>
                  api('POST', `/v1/tenants/${tenant}/members`, { user, role }, { tenant: false }),
                );
              }}
            >
              <label>
                User
                <input required value={user} onChange={(e) => setUser(e.target.value)} />
              </label>
              <label>
                Role
                <input required value={role} onChange={(e) => setRole(e.target.value)} />
              </label>
              <button type="submit" disabled={action.busy}>
                Add member
              </button>
            </form>
          )}
        </section>
      )}
      {users.data && (
        <section className="card" aria-labelledby="users-title">
          <h2 id="users-title">All users</h2>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Username</th>
                  <th scope="col">MFA</th>
                  <th scope="col">Disabled</th>
                  <th scope="col">Password changed</th>
                </tr>
              </thead>
              <tbody>
                {users.data.items.map((u) => (
                  <tr key={u.id}>
                    <td>{u.username}</td>
                    <td>{u.mfaEnabled ? 'on' : 'off'}</td>
                    <td>{u.disabled ? 'yes' : 'no'}</td>
                    <td>{when(u.passwordChangedAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {can('platform:user:create') && (
            <form
              className="inline-form"
              aria-label="Create user"
              onSubmit={(e) => {
                e.preventDefault();
                void action.run(() => api('POST', '/v1/users', { username, password }, { tenant: false }));
              }}
            >
              <label>
                Username
                <input required value={username} onChange={(e) => setUsername(e.target.value)} />
              </label>
              <label>
                One-time password
                <input
                  type="password"
                  autoComplete="new-password"
                  required
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                />
              </label>
              <button type="submit" disabled={action.busy}>
                Create user
              </button>
            </form>
          )}
        </section>
      )}
    </>
  );
}
