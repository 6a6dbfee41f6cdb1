/** Images with their scan and signature verdicts, and the tenant's trust policy (editable with image:trust). */
import { api } from '../api/client.js';
import type { Image, List, TrustPolicy } from '../api/types.js';
import { useAuth } from '../auth.js';
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
  return (
    <>
      <h1>Images</h1>
      <Notice error={images.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Format</th>
              <th scope="col">Status</th>
              <th scope="col">Scan</th>
              <th scope="col">Signature</th>
              <th scope="col">Visibility</th>
              <th scope="col">SHA-256</th>
            </tr>
          </thead>
          <tbody>
            {(images.data?.items ?? []).map((i) => (
              <tr key={i.id}>
                <td>{i.name}</td>
                <td>{i.format}</td>
                <td className="wrap">
                  <Badge value={i.status} /> <span className="muted">{i.statusReason}</span>
                </td>
                <td>
                  <Badge value={i.scan.verdict ?? 'pending'} kind="verdict" />
                  {i.scan.signatures.length > 0 && <span> {i.scan.signatures.join(', ')}</span>}
                </td>
                <td>
                  {i.platformSigned ? (
                    <Badge value="platform-signed" kind="verdict" />
                  ) : (
                    <span className="muted">unsigned</span>
                  )}
                </td>
                <td>{i.visibility}</td>
                <td>
                  <code title={i.sha256 ?? ''}>{i.sha256?.slice(0, 12) ?? '—'}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {policy.data && (
        <section className="card" aria-labelledby="trust-title">
          <h2 id="trust-title">Trust policy ({tenant})</h2>
          <label className="choice">
            <input
              type="checkbox"
              checked={policy.data.requireSignatures}
              disabled={!can('image:trust') || action.busy}
              onChange={(e) => set({ requireSignatures: e.target.checked })}
            />
            Require a trusted signature to boot an image
          </label>
          <label className="choice">
            <input
              type="checkbox"
              checked={policy.data.acceptPlatformImages}
              disabled={!can('image:trust') || action.busy}
              onChange={(e) => set({ acceptPlatformImages: e.target.checked })}
            />
            Accept platform-signed images
          </label>
          <Notice error={action.error} />
        </section>
      )}
    </>
  );
}
