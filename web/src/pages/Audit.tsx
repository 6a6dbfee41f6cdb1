/** The audit log with filters (actor, action, outcome, since), and the chain's verification for platform auditors. */
import { useState } from 'react';
import type { AuditRecordView, AuditVerification } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { when } from '../format.js';
import { useApi } from '../use-api.js';

/** Characters of a record's detail shown in its row; a longer one unfolds (rows stay short). */
const DETAIL_SHOWN = 60;

function Detail({ text }: { text: string | null }) {
  if (!text || text.length <= DETAIL_SHOWN + 20) return <>{text ?? ''}</>;
  return (
    <details>
      <summary>{text.slice(0, DETAIL_SHOWN)}…</summary>
      {text}
    </details>
  );
}

export function Audit() {
  const { can } = useAuth();
  const platform = can('platform:audit:read');
  const [actor, setActor] = useState('');
  const [action, setAction] = useState('');
  const [outcome, setOutcome] = useState('');
  const [since, setSince] = useState('');
  const [applied, setApplied] = useState<Record<string, string | undefined>>({ limit: '200' });
  const records = useApi<{ items: AuditRecordView[] }>(platform ? '/v1/platform/audit' : '/v1/audit', {
    query: applied,
    tenant: !platform,
  });
  const verify = useApi<AuditVerification>(platform ? '/v1/audit/verify' : null, { tenant: false });
  return (
    <>
      <h1>Audit log</h1>
      {verify.data && (
        <p className={verify.data.ok ? 'notice ok' : 'notice error'} role="status" data-testid="audit-verify">
          Chain {verify.data.ok ? 'verified' : 'BROKEN'}: {verify.data.records} records,{' '}
          {verify.data.checkpoints} signed checkpoints
          {verify.data.firstBad &&
            ` — first bad ${verify.data.firstBad.kind} #${verify.data.firstBad.index}: ${verify.data.firstBad.reason}`}
        </p>
      )}
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({
            limit: '200',
            actor: actor || undefined,
            action: action || undefined,
            outcome: outcome || undefined,
            since: since ? new Date(since).toISOString() : undefined,
          });
        }}
      >
        <label>
          Actor
          <input value={actor} onChange={(e) => setActor(e.target.value)} />
        </label>
        <label>
          Action
          <input value={action} onChange={(e) => setAction(e.target.value)} placeholder="e.g. vm:create" />
        </label>
        <label>
          Outcome
          <select value={outcome} onChange={(e) => setOutcome(e.target.value)}>
            <option value="">any</option>
            <option>success</option>
            <option>denied</option>
            <option>failure</option>
          </select>
        </label>
        <label>
          Since
          <input type="datetime-local" value={since} onChange={(e) => setSince(e.target.value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <Notice error={records.error ?? verify.error} />
      <div className="table-wrap" role="region" aria-label="Audit records">
        <table>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Time</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Outcome</th>
              <th scope="col">Source</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {(records.data?.items ?? []).map((r) => (
              <tr key={r.seq}>
                <td>{r.seq}</td>
                <td>{when(r.time)}</td>
                <td>{r.actor}</td>
                <td>{r.action}</td>
                <td className="wrap break">{r.target ?? ''}</td>
                <td>
                  <Badge value={r.outcome} kind="outcome" /> {r.status}
                </td>
                <td>{r.source}</td>
                <td className="wrap muted">
                  <Detail text={r.detail} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
