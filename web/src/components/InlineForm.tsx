/**
 * A one-line form (create, add, change) with its submit button: a card of its own with a heading and a
 * primary button, or, nested in a card, a plain one. Submitting runs onSubmit (the page's API call).
 */
import type { ReactNode } from 'react';
import { Notice } from './Notice.js';

interface Props {
  /** The form's accessible name. */
  label: string;
  /** A visible heading (card forms). */
  title?: string;
  /** The submit button's text. */
  submit?: string;
  busy: boolean;
  onSubmit: () => void;
  /** Inside a card already: no card, a plain button. */
  nested?: boolean;
  /** An error shown after the button. */
  error?: string | null;
  children: ReactNode;
}

export function InlineForm({
  label,
  title,
  submit = 'Create',
  busy,
  onSubmit,
  nested,
  error,
  children,
}: Props) {
  return (
    <form
      className={nested ? 'inline-form' : 'card inline-form'}
      aria-label={label}
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      {title && <h2>{title}</h2>}
      {children}
      <button type="submit" className={nested ? undefined : 'primary'} disabled={busy}>
        {submit}
      </button>
      {error !== undefined && <Notice error={error} />}
    </form>
  );
}
