/** A small button that deletes, removes or revokes something (a row's or a card's action). */
import type { ReactNode } from 'react';

interface Props {
  onClick: () => void;
  children: ReactNode;
  /** The accessible name, where the text alone does not say what it acts on. */
  label?: string;
}

export function DangerButton({ onClick, children, label }: Props) {
  return (
    <button type="button" className="danger small" aria-label={label} onClick={onClick}>
      {children}
    </button>
  );
}
