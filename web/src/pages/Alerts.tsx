/**
 * Security alerts (the tenant's, or all for platform responders): acknowledge, resolve with a note,
 * and undo an automatic response where one can be undone (release an isolated VM).
 */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { List, SecurityAlert } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { when } from '../format.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Alerts() {
  const { can } = useAuth();
  const platform = can('platform:security:read');
  const [status, setStatus] = useState('open');
  const alerts = useApi<List<SecurityAlert>>(
    platform ? '/v1/platform/security/alerts' : '/v1/security/alerts',
    {
      query: { status: status || undefined },
      tenant: !platform,
      refreshMs: 5000,
    },
  );
  const action = useAction(alerts.reload);
  const update = (a: SecurityAlert, body: Record<string, unknown>) => {
    const path = a.tenantId === null ? `/v1/platform/security/alerts/${a.id}` : `/v1/security/alerts/${a.id}`;
    return action.run(() => api('PATCH', path, body, { tenant: a.tenantId !== null }));
  };
  const mayRespond = (a: SecurityAlert) =>
    a.tenantId === null ? can('platform:security:respond') : can('security:respond');
  return (
    <>
      <h1>Security alerts</h1>
      <div className="filters">
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">any</option>
            <option>open</option>
            <option>acknowledged</option>
            <option>resolved</option>
          </select>
        </label>
      </div>
      <Notice error={alerts.error ?? action.error} />
      {alerts.data && alerts.data.items.length === 0 && <p className="muted">No alerts.</p>}
      <ul className="alert-list">
        {(alerts.data?.items ?? []).map((a) => (
          <li key={a.id} className="card alert" aria-labelledby={`alert-${a.id}`}>
            <div className="page-head">
              <h2 id={`alert-${a.id}`}>
                <Badge value={a.severity} kind="severity" /> {a.summary}
              </h2>
              <Badge value={a.status} kind="alert" />
            </div>
            <p className="muted">
              Rule <code>{a.ruleId}</code>, {a.count} event{a.count === 1 ? '' : 's'}, first {when(a.firstAt)}
              , last {when(a.lastAt)}; subject {a.subjectType} <code>{a.subjectId ?? '—'}</code>
            </p>
            {a.response.action !== 'none' && (
              <p>
                Response: <strong>{a.response.action}</strong>{' '}
                {a.response.target && <code>{a.response.target}</code>} — {a.response.outcome}
              </p>
            )}
            {a.notes.length > 0 && (
              <ul className="plain">
                {a.notes.map((n) => (
                  <li key={n.at}>
                    <span className="muted">
                      {when(n.at)} {n.author}:
                    </span>{' '}
                    {n.text}
                  </li>
                ))}
              </ul>
            )}
            {mayRespond(a) && (
              <div className="actions">
                {a.status === 'open' && (
                  <button
                    type="button"
                    onClick={() =>
                      void update(a, { status: 'acknowledged', note: 'acknowledged in the console' })
                    }
                  >
                    Acknowledge
                  </button>
                )}
                {a.status !== 'resolved' && (
                  <button
                    type="button"
                    onClick={() => void update(a, { status: 'resolved', note: 'resolved in the console' })}
                  >
                    Resolve
                  </button>
                )}
                {a.response.action === 'isolate-vm' && a.response.target && can('security:respond') && (
                  <button
                    type="button"
                    className="danger"
                    onClick={() =>
                      void action.run(() =>
                        api('PUT', `/v1/vms/${a.response.target}/isolation`, { isolated: false }),
                      )
                    }
                  >
                    Release isolation
                  </button>
                )}
              </div>
            )}
          </li>
        ))}
      </ul>
    </>
  );
}
