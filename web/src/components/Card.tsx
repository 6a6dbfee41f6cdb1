/** A card section named by its h2; with `actions` (buttons, maybe none) the heading shares a row with them. */
import type { ReactNode } from 'react';

interface Props {
  /** The heading's id, which names the section. */
  id: string;
  title: ReactNode;
  actions?: ReactNode;
  className?: string;
  children?: ReactNode;
}

export function Card({ id, title, actions, className, children }: Props) {
  const heading = <h2 id={id}>{title}</h2>;
  return (
    <section className={className ? `card ${className}` : 'card'} aria-labelledby={id}>
      {actions === undefined ? (
        heading
      ) : (
        <div className="page-head">
          {heading}
          {actions}
        </div>
      )}
      {children}
    </section>
  );
}
