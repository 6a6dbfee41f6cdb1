/** Security groups and their rules, with a rule editor (secgroup:update) and group create/delete. */
import { useState } from 'react';
import { api } from '../api/client.js';
import type { SecurityGroup, SecurityGroupRule } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Card } from '../components/Card.js';
import { CreateForm } from '../components/CreateForm.js';
import { DangerButton } from '../components/DangerButton.js';
import { DataTable } from '../components/DataTable.js';
import { Field } from '../components/Field.js';
import { InlineForm } from '../components/InlineForm.js';
import { NameField } from '../components/NameField.js';
import { Notice } from '../components/Notice.js';
import { SelectField } from '../components/SelectField.js';
import { useAction } from '../use-action.js';
import { useResource } from '../use-resource.js';

export function SecurityGroups() {
  const { can } = useAuth();
  const groups = useResource<SecurityGroup>('/v1/security-groups');
  const [name, setName] = useState('');
  return (
    <>
      <h1>Security groups</h1>
      <Notice error={groups.error} />
      {groups.items.map((g) => (
        <Card
          key={g.id}
          id={`sg-${g.id}`}
          title={g.name}
          actions={
            can('secgroup:delete') &&
            g.name !== 'default' && (
              <DangerButton
                onClick={() => void groups.run(() => api('DELETE', `/v1/security-groups/${g.id}`))}
              >
                Delete group
              </DangerButton>
            )
          }
        >
          {g.description && <p className="muted">{g.description}</p>}
          <DataTable<SecurityGroupRule>
            rows={g.rules}
            rowKey={(r) => r.id}
            empty="No rules: allows nothing."
            columns={[
              { header: 'Direction', cell: (r) => r.direction },
              { header: 'Protocol', cell: (r) => r.protocol },
              {
                header: 'Ports',
                cell: (r) =>
                  r.portMin === null
                    ? 'all'
                    : r.portMin === r.portMax
                      ? r.portMin
                      : `${r.portMin}-${r.portMax}`,
              },
              {
                header: 'Remote',
                cell: (r) =>
                  r.remoteCidr ?? (r.remoteGroupId ? `group ${r.remoteGroupId.slice(0, 8)}` : 'any'),
              },
              { header: 'Description', cell: (r) => r.description, className: 'wrap' },
            ]}
            actions={
              can('secgroup:update')
                ? (r) => (
                    <DangerButton
                      label={`Delete rule ${r.direction} ${r.protocol}`}
                      onClick={() =>
                        void groups.run(() => api('DELETE', `/v1/security-groups/${g.id}/rules/${r.id}`))
                      }
                    >
                      Delete
                    </DangerButton>
                  )
                : undefined
            }
          />
          {can('secgroup:update') && <RuleEditor group={g} onSaved={groups.reload} />}
        </Card>
      ))}
      <CreateForm
        permission="secgroup:create"
        noun="security group"
        resource={groups}
        create={() => api('POST', '/v1/security-groups', { name })}
        reset={() => setName('')}
      >
        <NameField value={name} onChange={setName} />
      </CreateForm>
    </>
  );
}

function RuleEditor({ group, onSaved }: { group: SecurityGroup; onSaved: () => void }) {
  const [direction, setDirection] = useState('ingress');
  const [protocol, setProtocol] = useState('tcp');
  const [ports, setPorts] = useState('');
  const [remote, setRemote] = useState('');
  const action = useAction(onSaved);
  const submit = () => {
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
    <InlineForm
      nested
      label={`Add a rule to ${group.name}`}
      submit="Add rule"
      busy={action.busy}
      error={action.error}
      onSubmit={submit}
    >
      <SelectField
        label="Direction"
        value={direction}
        onChange={setDirection}
        options={['ingress', 'egress']}
      />
      <SelectField
        label="Protocol"
        value={protocol}
        onChange={setProtocol}
        options={['tcp', 'udp', 'icmp', 'any']}
      />
      <Field
        label="Ports"
        value={ports}
        onChange={setPorts}
        placeholder="80 or 8000-8080"
        pattern="\d+(-\d+)?"
      />
      <Field label="Remote CIDR" value={remote} onChange={setRemote} placeholder="any" />
    </InlineForm>
  );
}
