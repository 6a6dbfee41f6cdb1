/**
 * The "New …" form under a resource list, shown only with `permission`: submitting runs `create` as
 * the list's change (busy meanwhile, the list reloads after), then `reset` where it succeeded.
 */
import type { ReactNode } from 'react';
import { useAuth } from '../auth.js';
import { InlineForm } from './InlineForm.js';

interface Props {
  permission: string;
  /** What it creates: the form is named "Create <noun>", headed "New <noun>" unless `title` says otherwise. */
  noun: string;
  title?: string;
  resource: { busy: boolean; run: (change: () => Promise<unknown>) => Promise<boolean> };
  create: () => Promise<unknown>;
  reset?: () => void;
  children: ReactNode;
}

export function CreateForm({ permission, noun, title, resource, create, reset, children }: Props) {
  const { can } = useAuth();
  if (!can(permission)) return null;
  return (
    <InlineForm
      label={`Create ${noun}`}
      title={title ?? `New ${noun}`}
      busy={resource.busy}
      onSubmit={() => void resource.run(create).then((ok) => ok && reset?.())}
    >
      {children}
    </InlineForm>
  );
}
