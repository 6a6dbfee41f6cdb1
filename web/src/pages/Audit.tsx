/** The audit log with filters (actor, action, outcome, since), and the chain's verification for platform auditors. */
import { useState } from 'react';
import type { AuditRecordView, AuditVerification } from '../api/types.js';
import { useAuth } from '../auth.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { Notice } from '../components/Notice.js';
import { SelectField } from '../components/SelectField.js';
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
        <Field label="Actor" value={actor} onChange={setActor} />
        <Field label="Action" value={action} onChange={setAction} placeholder="e.g. vm:create" />
        <SelectField
          label="Outcome"
          value={outcome}
          onChange={setOutcome}
          options={['success', 'denied', 'failure']}
          blank="any"
        />
        <Field label="Since" type="datetime-local" value={since} onChange={setSince} />
        <button type="submit">Filter</button>
      </form>
      <Notice error={records.error ?? verify.error} />
      <DataTable
        label="Audit records"
        rows={records.data?.items ?? []}
        rowKey={(r) => r.seq}
        columns={[
          { header: '#', cell: (r) => r.seq },
          { header: 'Time', cell: (r) => when(r.time) },
          { header: 'Actor', cell: (r) => r.actor },
          { header: 'Action', cell: (r) => r.action },
          { header: 'Target', cell: (r) => r.target ?? '', className: 'wrap break' },
          {
            header: 'Outcome',
            cell: (r) => (
              <>
                <Badge value={r.outcome} kind="outcome" /> {r.status}
              </>
            ),
          },
          { header: 'Source', cell: (r) => r.source },
          { header: 'Detail', cell: (r) => <Detail text={r.detail} />, className: 'wrap muted' },
        ]}
      />
    </>
  );
}
