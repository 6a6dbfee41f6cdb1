/** The latest compliance report (score, each check with evidence), its history, and a manual run. */
import { api } from '../api/client.js';
import type { ComplianceReport, List } from '../api/types.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { when } from '../format.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

interface RunSummary {
  id: string;
  finishedAt: string;
  trigger: string;
  score: number;
  passed: number;
  failed: number;
}

export function Compliance() {
  const history = useApi<List<RunSummary>>('/v1/platform/compliance/history', {
    tenant: false,
    query: { limit: '10' },
  });
  const hasRun = (history.data?.items.length ?? 0) > 0;
  const report = useApi<ComplianceReport>(hasRun ? '/v1/platform/compliance/report' : null, {
    tenant: false,
  });
  const action = useAction(() => {
    history.reload();
    report.reload();
  });
  return (
    <>
      <div className="page-head">
        <h1>Compliance</h1>
        <button
          type="button"
          className="primary"
          disabled={action.busy}
          onClick={() =>
            void action.run(() => api('POST', '/v1/platform/compliance/runs', {}, { tenant: false }))
          }
        >
          Run now
        </button>
      </div>
      <Notice error={history.error ?? report.error ?? action.error} />
      {history.data && !hasRun && <p className="muted">No report yet.</p>}
      {report.data && (
        <>
          <p className="big" data-testid="compliance-score">
            {Math.round(report.data.score)}%
          </p>
          <p className="muted">
            {report.data.passed} passed, {report.data.failed} failed — {when(report.data.finishedAt)} (
            {report.data.trigger})
          </p>
          <ul className="alert-list">
            {report.data.results.map((r) => (
              <li key={r.id} className="card">
                <h2>
                  <Badge value={r.passed ? 'pass' : 'fail'} kind="verdict" /> {r.title}{' '}
                  <span className="muted">({r.severity})</span>
                </h2>
                <p className="muted break">{r.evidence}</p>
              </li>
            ))}
          </ul>
        </>
      )}
      {history.data && hasRun && (
        <section className="card">
          <h2>History</h2>
          <ul className="plain">
            {history.data.items.map((h) => (
              <li key={h.id}>
                {when(h.finishedAt)}: {Math.round(h.score)}% ({h.passed} passed, {h.failed} failed,{' '}
                {h.trigger})
              </li>
            ))}
          </ul>
        </section>
      )}
    </>
  );
}
