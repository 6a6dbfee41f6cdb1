/** An error or status line, announced to screen readers. */
import type { ReactNode } from 'react';
export function Notice({ error, children }: { error?: string | null; children?: ReactNode }) {
  if (error)
    return (
      <p className="notice error" role="alert">
        {error}
      </p>
    );
  if (!children) return null;
  return (
    <p className="notice" role="status">
      {children}
    </p>
  );
}
