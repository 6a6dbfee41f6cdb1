/** Every quota of the tenant as a bar; platform admins may change a limit (platform:quota:update). */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { Quota } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Bar } from '../components/Bar.js';
import { Field } from '../components/Field.js';
import { InlineForm } from '../components/InlineForm.js';
import { Notice } from '../components/Notice.js';
import { SelectField } from '../components/SelectField.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

const UNITS: Record<string, string> = {
  memoryMiB: ' MiB',
  diskGiB: ' GiB',
  imageStorageGiB: ' GiB',
  volumeGiB: ' GiB',
};

export function Quotas() {
  const { can, tenant } = useAuth();
  const quota = useApi<Quota>(tenant ? `/v1/tenants/${tenant}/quota` : null, { tenant: false });
  const action = useAction(quota.reload);
  const [resource, setResource] = useState('vms');
  const [limit, setLimit] = useState('');
  const entries = Object.entries(quota.data?.resources ?? {});
  return (
    <>
      <h1>Quotas {tenant && <span className="muted">({tenant})</span>}</h1>
      <Notice error={quota.error ?? action.error} />
      <section className="card quota-list">
        {entries.map(([key, entry]) => (
          <Bar
            key={key}
            label={`${key}${entry.overridden ? ' (set for this tenant)' : ''}`}
            used={entry.usage}
            limit={entry.limit}
            unit={UNITS[key] ?? ''}
          />
        ))}
      </section>
      {can('platform:quota:update') && entries.length > 0 && (
        <InlineForm
          label="Change a limit"
          title="Change a limit"
          submit="Save"
          busy={action.busy}
          onSubmit={() =>
            void action.run(() =>
              api(
                'PUT',
                `/v1/tenants/${tenant}/quota`,
                { [resource]: limit === '' ? null : Number(limit) },
                { tenant: false },
              ),
            )
          }
        >
          <SelectField
            label="Resource"
            value={resource}
            onChange={setResource}
            options={entries.map(([key]) => key)}
          />
          <Field
            label="Limit (-1 unlimited, empty: platform default)"
            type="number"
            min={-1}
            value={limit}
            onChange={setLimit}
          />
        </InlineForm>
      )}
    </>
  );
}
