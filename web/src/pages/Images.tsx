/** Images with their scan and signature verdicts, and the tenant's trust policy (editable with image:trust). */
import { api } from '../api/client.js';
import type { Image, List, TrustPolicy } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Card } from '../components/Card.js';
import { Choice } from '../components/Choice.js';
import { DataTable } from '../components/DataTable.js';
import { Notice } from '../components/Notice.js';
import { Badge } from '../components/StateBadge.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

export function Images() {
  const { can, tenant } = useAuth();
  const images = useApi<List<Image>>('/v1/images');
  const policy = useApi<TrustPolicy>(tenant ? `/v1/tenants/${tenant}/trust-policy` : null, { tenant: false });
  const action = useAction(policy.reload);
  const set = (change: Partial<TrustPolicy>) =>
    void action.run(() => api('PUT', `/v1/tenants/${tenant}/trust-policy`, change, { tenant: false }));
  const locked = !can('image:trust') || action.busy;
  return (
    <>
      <h1>Images</h1>
      <Notice error={images.error} />
      <DataTable
        rows={images.data?.items ?? []}
        rowKey={(i) => i.id}
        columns={[
          { header: 'Name', cell: (i) => i.name },
          { header: 'Format', cell: (i) => i.format },
          {
            header: 'Status',
            className: 'wrap',
            cell: (i) => (
              <>
                <Badge value={i.status} /> <span className="muted">{i.statusReason}</span>
              </>
            ),
          },
          {
            header: 'Scan',
            cell: (i) => (
              <>
                <Badge value={i.scan.verdict ?? 'pending'} kind="verdict" />
                {i.scan.signatures.length > 0 && <span> {i.scan.signatures.join(', ')}</span>}
              </>
            ),
          },
          {
            header: 'Signature',
            cell: (i) =>
              i.platformSigned ? (
                <Badge value="platform-signed" kind="verdict" />
              ) : (
                <span className="muted">unsigned</span>
              ),
          },
          { header: 'Visibility', cell: (i) => i.visibility },
          {
            header: 'SHA-256',
            cell: (i) => <code title={i.sha256 ?? ''}>{i.sha256?.slice(0, 12) ?? '—'}</code>,
          },
        ]}
      />
      {policy.data && (
        <Card id="trust-title" title={`Trust policy (${tenant})`}>
          <Choice
            type="checkbox"
            checked={policy.data.requireSignatures}
            disabled={locked}
            onChange={(checked) => set({ requireSignatures: checked })}
          >
            Require a trusted signature to boot an image
          </Choice>
          <Choice
            type="checkbox"
            checked={policy.data.acceptPlatformImages}
            disabled={locked}
            onChange={(checked) => set({ acceptPlatformImages: checked })}
          >
            Accept platform-signed images
          </Choice>
          <Notice error={action.error} />
        </Card>
      )}
    </>
  );
}
