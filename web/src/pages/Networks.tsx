/** The tenant's networks: list, create (network:create), delete (network:delete). */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { Network } from '../api/types.js';
import { useAuth } from '../auth.js';
import { CreateForm } from '../components/CreateForm.js';
import { DangerButton } from '../components/DangerButton.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { NameField } from '../components/NameField.js';
import { Notice } from '../components/Notice.js';
import { useResource } from '../use-resource.js';

export function Networks() {
  const { can } = useAuth();
  const networks = useResource<Network>('/v1/networks');
  const [name, setName] = useState('');
  const [cidr, setCidr] = useState('10.0.0.0/24');
  return (
    <>
      <h1>Networks</h1>
      <Notice error={networks.error} />
      <DataTable
        rows={networks.items}
        rowKey={(n) => n.id}
        columns={[
          { header: 'Name', cell: (n) => n.name },
          { header: 'CIDR', cell: (n) => n.cidr },
          { header: 'Gateway', cell: (n) => n.gateway },
          { header: 'Ports', cell: (n) => `${n.ports} / ${n.capacity}` },
          { header: 'Outbound', cell: (n) => (n.outbound ? 'yes' : 'no') },
        ]}
        actions={
          can('network:delete')
            ? (n) => (
                <DangerButton
                  label={`Delete network ${n.name}`}
                  onClick={() => void networks.run(() => api('DELETE', `/v1/networks/${n.id}`))}
                >
                  Delete
                </DangerButton>
              )
            : undefined
        }
      />
      <CreateForm
        permission="network:create"
        noun="network"
        resource={networks}
        create={() => api('POST', '/v1/networks', { name, cidr })}
        reset={() => setName('')}
      >
        <NameField value={name} onChange={setName} />
        <Field label="CIDR" required value={cidr} onChange={setCidr} />
      </CreateForm>
    </>
  );
}
