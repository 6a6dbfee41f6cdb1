/** The create wizard: 1 name and flavor, 2 image, 3 network and security groups, 4 review -> POST /v1/vms. */
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { api } from '../api/client.js';
import type { Flavor, Image, List, Network, SecurityGroup, Vm } from '../api/types.js';
import { Choice } from '../components/Choice.js';
import { Field } from '../components/Field.js';
import { NAME_PATTERN } from '../components/NameField.js';
import { Notice } from '../components/Notice.js';
import { RadioList } from '../components/RadioList.js';
import { SelectField } from '../components/SelectField.js';
import { navigate } from '../router.js';
import { useAction } from '../use-action.js';
import { useApi } from '../use-api.js';

const STEPS = ['Name and flavor', 'Image', 'Network', 'Review'];

export function VmCreate() {
  const flavors = useApi<List<Flavor>>('/v1/flavors');
  const images = useApi<List<Image>>('/v1/images');
  const networks = useApi<List<Network>>('/v1/networks');
  const groups = useApi<List<SecurityGroup>>('/v1/security-groups');
  const [step, setStep] = useState(0);
  const [name, setName] = useState('');
  const [flavor, setFlavor] = useState('');
  const [image, setImage] = useState('');
  const [network, setNetwork] = useState('');
  const [secgroups, setSecgroups] = useState<string[]>([]);
  const action = useAction();
  const heading = useRef<HTMLHeadingElement>(null);
  const moved = useRef(false);
  // On a step change the step's heading takes focus, so a screen reader reads where the user is.
  useEffect(() => {
    if (moved.current) heading.current?.focus();
    moved.current = true;
  }, [step]);
  const usable = (images.data?.items ?? []).filter((i) => i.status === 'active');
  const valid = [/^[a-z0-9][a-z0-9-]{0,62}$/.test(name) && flavor !== '', image !== '', true, true];

  const next = (event: FormEvent) => {
    event.preventDefault();
    if (step < STEPS.length - 1) return setStep(step + 1);
    void action.run(async () => {
      const body: Record<string, unknown> = { name, flavor, image };
      if (network) {
        body.network = network;
        body.securityGroups = secgroups;
      }
      const vm = await api<Vm>('POST', '/v1/vms', body);
      navigate(`/vms/${vm.name}`);
    });
  };
  const toggle = (group: string) =>
    setSecgroups(secgroups.includes(group) ? secgroups.filter((g) => g !== group) : [...secgroups, group]);

  return (
    <>
      <h1>Create a VM</h1>
      <ol className="steps" aria-label="Steps">
        {STEPS.map((label, i) => (
          <li key={label} aria-current={i === step ? 'step' : undefined} className={i < step ? 'done' : ''}>
            {label}
          </li>
        ))}
      </ol>
      <form className="card wizard" onSubmit={next} aria-labelledby="step-title">
        <h2 id="step-title" ref={heading} tabIndex={-1}>
          Step {step + 1} of {STEPS.length}: {STEPS[step]}
        </h2>
        <Notice error={flavors.error ?? images.error} />
        {step === 0 && (
          <fieldset>
            <legend>Name and flavor</legend>
            <Field
              label="Name"
              name="name"
              required
              pattern={NAME_PATTERN}
              value={name}
              onChange={setName}
              aria-describedby="name-help"
              autoFocus
            />
            <p id="name-help" className="muted">
              Lower-case letters, digits and dashes.
            </p>
            <RadioList name="flavor" items={flavors.data?.items ?? []} value={flavor} onChange={setFlavor}>
              {(f) => (
                <>
                  <strong>{f.name}</strong> {f.vcpus} vCPU, {f.memoryMiB} MiB, {f.diskGiB} GiB
                </>
              )}
            </RadioList>
          </fieldset>
        )}
        {step === 1 && (
          <fieldset>
            <legend>Image</legend>
            <RadioList name="image" items={usable} value={image} onChange={setImage}>
              {(i) => (
                <>
                  <strong>{i.name}</strong> {i.format}, scan {i.scan.verdict ?? 'pending'}
                  {i.platformSigned ? ', platform-signed' : ''}
                </>
              )}
            </RadioList>
            {images.data && usable.length === 0 && <p className="muted">No active image.</p>}
          </fieldset>
        )}
        {step === 2 && (
          <fieldset>
            <legend>Network and security groups</legend>
            <SelectField
              label="Network"
              name="network"
              value={network}
              onChange={setNetwork}
              blank="none (no network port)"
              options={(networks.data?.items ?? []).map((n) => ({
                value: n.name,
                label: `${n.name} (${n.cidr})`,
              }))}
            />
            {network && (
              <fieldset>
                <legend>Security groups</legend>
                {(groups.data?.items ?? []).map((g) => (
                  <Choice
                    key={g.id}
                    type="checkbox"
                    checked={secgroups.includes(g.name)}
                    onChange={() => toggle(g.name)}
                  >
                    {g.name} <span className="muted">({g.rules.length} rules)</span>
                  </Choice>
                ))}
              </fieldset>
            )}
          </fieldset>
        )}
        {step === 3 && (
          <dl className="facts">
            <dt>Name</dt>
            <dd>{name}</dd>
            <dt>Flavor</dt>
            <dd>{flavor}</dd>
            <dt>Image</dt>
            <dd>{image}</dd>
            <dt>Network</dt>
            <dd>{network || 'none'}</dd>
            <dt>Security groups</dt>
            <dd>{network ? secgroups.join(', ') || 'none' : '—'}</dd>
          </dl>
        )}
        <Notice error={action.error} />
        <div className="actions">
          <button type="button" disabled={step === 0} onClick={() => setStep(step - 1)}>
            Back
          </button>
          <button type="submit" className="primary" disabled={!valid[step] || action.busy}>
            {step === STEPS.length - 1 ? 'Create' : 'Next'}
          </button>
        </div>
      </form>
    </>
  );
}
