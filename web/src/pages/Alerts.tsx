/**
 * Security alerts (the tenant's, or all for platform responders): acknowledge, resolve, assign and
 * annotate; the evidence (the alert's events); and undo of the automatic response where it can be
 * undone (alert-undo.ts), offered only with the permission the inverse route needs.
 */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { AlertStatus, List, SecurityAlert } from '../api/types.js';
import { undoOf } from '../alert-undo.js';
import { useAuth } from '../auth.js';
import { AlertEvents } from '../components/AlertEvents.js';
import { AlertNotes } from '../components/AlertNotes.js';
import { announce } from '../components/LiveRegion.js';
import { Notice } from '../components/Notice.js';
import { SelectField } from '../components/SelectField.js';
import { Badge } from '../components/StateBadge.js';
import { when } from '../format.js';
import { Link } from '../router.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

/** The status changes a responder makes here: the button, the new status, and the statuses it leaves. */
const STATUS_CHANGES: { label: string; to: AlertStatus; from: AlertStatus[] }[] = [
  { label: 'Acknowledge', to: 'acknowledged', from: ['open'] },
  { label: 'Resolve', to: 'resolved', from: ['open', 'acknowledged'] },
];

export function Alerts() {
  const { can } = useAuth();
  const platform = can('platform:security:read');
  const [status, setStatus] = useState('open');
  const [done, setDone] = useState<string | null>(null);
  const alerts = useApi<List<SecurityAlert>>(
    platform ? '/v1/platform/security/alerts' : '/v1/security/alerts',
    {
      query: { status: status || undefined },
      tenant: !platform,
      refreshMs: 5000,
    },
  );
  const action = useAction(alerts.reload);
  const alertPath = (a: SecurityAlert) =>
    a.tenantId === null ? `/v1/platform/security/alerts/${a.id}` : `/v1/security/alerts/${a.id}`;
  const mayRespond = (a: SecurityAlert) =>
    a.tenantId === null ? can('platform:security:respond') : can('security:respond');
  const patch = (a: SecurityAlert, body: Record<string, unknown>) =>
    api(
      'PATCH',
      alertPath(a),
      body,
      a.tenantId === null ? { tenant: false } : { tenant: false, query: { tenant: a.tenantId } },
    );
  const update = (a: SecurityAlert, body: Record<string, unknown>, message: string) => {
    setDone(null);
    return action.run(async () => {
      await patch(a, body);
      setDone(message);
      announce(message);
    });
  };
  const undo = (a: SecurityAlert) => {
    const found = undoOf(a);
    if (found?.kind !== 'undo') return;
    const { undo: u } = found;
    setDone(null);
    void action.run(async () => {
      await api(u.method, u.path, u.body, u.options);
      // The alert keeps a record of the undo for the next responder (best effort).
      if (mayRespond(a)) await patch(a, { note: `undone in the console: ${u.label}` }).catch(() => undefined);
      const message = `${u.done}: ${a.response.target ?? ''} (alert ${a.ruleId})`;
      setDone(message);
      announce(message);
    });
  };
  return (
    <>
      <h1>Security alerts</h1>
      <div className="filters">
        <SelectField
          label="Status"
          value={status}
          onChange={setStatus}
          options={['open', 'acknowledged', 'resolved']}
          blank="any"
        />
      </div>
      <Notice error={alerts.error ?? action.error}>{done}</Notice>
      {alerts.data && alerts.data.items.length === 0 && <p className="muted">No alerts.</p>}
      <ul className="alert-list">
        {(alerts.data?.items ?? []).map((a) => {
          const inverse = undoOf(a);
          const target = a.response.target;
          const vmTarget = target && a.response.action.endsWith('-vm');
          return (
            <li key={a.id} className="card alert" aria-labelledby={`alert-${a.id}`}>
              <div className="page-head">
                <h2 id={`alert-${a.id}`}>
                  <Badge value={a.severity} kind="severity" /> {a.summary}
                </h2>
                <Badge value={a.status} kind="alert" />
              </div>
              <p className="muted">
                Rule <code>{a.ruleId}</code>, {a.count} event{a.count === 1 ? '' : 's'}, first{' '}
                {when(a.firstAt)}, last {when(a.lastAt)}; subject {a.subjectType}{' '}
                <code className="break">{a.subjectId ?? '—'}</code>
              </p>
              {a.response.action !== 'none' && a.response.action !== 'alert' && (
                <p data-testid="alert-response">
                  Response: <strong>{a.response.action}</strong>{' '}
                  {target &&
                    (vmTarget ? (
                      <Link href={`/vms/${target}`}>
                        <code className="break">{target}</code>
                      </Link>
                    ) : (
                      <code className="break">{target}</code>
                    ))}{' '}
                  — {a.response.outcome}
                </p>
              )}
              {inverse?.kind === 'impossible' && <p className="muted">{inverse.text}</p>}
              <AlertEvents alert={a} platform={platform} />
              <AlertNotes
                alert={a}
                editable={mayRespond(a)}
                busy={action.busy}
                save={(body) => update(a, body, 'Alert updated')}
              />
              <div className="actions">
                {mayRespond(a) &&
                  STATUS_CHANGES.filter((c) => c.from.includes(a.status)).map((c) => (
                    <button
                      key={c.to}
                      type="button"
                      disabled={action.busy}
                      onClick={() =>
                        void update(a, { status: c.to, note: `${c.to} in the console` }, `Alert ${c.to}`)
                      }
                    >
                      {c.label}
                    </button>
                  ))}
                {inverse?.kind === 'undo' && can(inverse.undo.permission) && (
                  <button type="button" className="danger" disabled={action.busy} onClick={() => undo(a)}>
                    {inverse.undo.label}
                  </button>
                )}
              </div>
            </li>
          );
        })}
      </ul>
    </>
  );
}
