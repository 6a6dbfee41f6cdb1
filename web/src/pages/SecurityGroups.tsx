/** Security groups and their rules, with a rule editor (secgroup:update) and group create/delete. */
import { useState, type FormEvent } from 'react';
import { api } from '../api/client.js';
import type { List, SecurityGroup } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function SecurityGroups() {
  const { can } = useAuth();
  const groups = useApi<List<SecurityGroup>>('/v1/security-groups');
  const action = useAction(groups.reload);
  const [name, setName] = useState('');
  return (
    <>
      <h1>Security groups</h1>
      <Notice error={groups.error ?? action.error} />
      {(groups.data?.items ?? []).map((g) => (
        <section key={g.id} className="card" aria-labelledby={`sg-${g.id}`}>
          <div className="page-head">
            <h2 id={`sg-${g.id}`}>{g.name}</h2>
            {can('secgroup:delete') && g.name !== 'default' && (
              <button
                type="button"
                className="danger small"
                onClick={() => void action.run(() => api('DELETE', `/v1/security-groups/${g.id}`))}
              >
                Delete group
              </button>
            )}
          </div>
          {g.description && <p className="muted">{g.description}</p>}
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Direction</th>
                  <th scope="col">Protocol</th>
                  <th scope="col">Ports</th>
                  <th scope="col">Remote</th>
                  <th scope="col">Description</th>
                  {can('secgroup:update') && (
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {g.rules.map((r) => (
                  <tr key={r.id}>
                    <td>{r.direction}</td>
                    <td>{r.protocol}</td>
                    <td>
                      {r.portMin === null
                        ? 'all'
                        : r.portMin === r.portMax
                          ? r.portMin
                          : `${r.portMin}-${r.portMax}`}
                    </td>
                    <td>
                      {r.remoteCidr ?? (r.remoteGroupId ? `group ${r.remoteGroupId.slice(0, 8)}` : 'any')}
                    </td>
                    <td className="wrap">{r.description}</td>
                    {can('secgroup:update') && (
                      <td>
                        <button
                          type="button"
                          className="danger small"
                          aria-label={`Delete rule ${r.direction} ${r.protocol}`}
                          onClick={() =>
                            void action.run(() => api('DELETE', `/v1/security-groups/${g.id}/rules/${r.id}`))
                          }
                        >
                          Delete
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
                {g.rules.length === 0 && (
                  <tr>
                    <td colSpan={6} className="muted">
                      No rules: allows nothing.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          {can('secgroup:update') && <RuleEditor group={g} onSaved={groups.reload} />}
        </section>
      ))}
      {can('secgroup:create') && (
        <form
          className="card inline-form"
          aria-label="Create security group"
          onSubmit={(e) => {
            e.preventDefault();
            void action
              .run(() => api('POST', '/v1/security-groups', { name }))
              .then((ok) => ok && setName(''));
          }}
        >
          <h2>New security group</h2>
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

function RuleEditor({ group, onSaved }: { group: SecurityGroup; onSaved: () => void }) {
  const [direction, setDirection] = useState('ingress');
  const [protocol, setProtocol] = useState('tcp');
  const [ports, setPorts] = useState('');
  const [remote, setRemote] = useState('');
  const action = useAction(onSaved);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const body: Record<string, unknown> = { direction, protocol };
    const range = /^(\d+)(?:-(\d+))?$/.exec(ports.trim());
    if (range && (protocol === 'tcp' || protocol === 'udp')) {
      body.portMin = Number(range[1]);
      body.portMax = Number(range[2] ?? range[1]);
    }
    if (remote.trim()) body.remoteCidr = remote.trim();
    void action.run(() => api('POST', `/v1/security-groups/${group.id}/rules`, body));
  };
  return (
    <form className="inline-form" onSubmit={submit} aria-label={`Add a rule to ${group.name}`}>
      <label>
        Direction
        <select value={direction} onChange={(e) => setDirection(e.target.value)}>
          <option>ingress</option>
          <option>egress</option>
        </select>
      </label>
      <label>
        Protocol
        <select value={protocol} onChange={(e) => setProtocol(e.target.value)}>
          <option>tcp</option>
          <option>udp</option>
          <option>icmp</option>
          <option>any</option>
        </select>
      </label>
      <label>
        Ports
        <input
          value={ports}
          onChange={(e) => setPorts(e.target.value)}
          placeholder="80 or 8000-8080"
          pattern="\d+(-\d+)?"
        />
      </label>
      <label>
        Remote CIDR
        <input value={remote} onChange={(e) => setRemote(e.target.value)} placeholder="any" />
      </label>
      <button type="submit" disabled={action.busy}>
        Add rule
      </button>
      <Notice error={action.error} />
    </form>
  );
}
