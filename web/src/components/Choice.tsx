/** A checkbox or radio button with its text after it (label.choice). */
import type { ReactNode } from 'react';

interface Props {
  type: 'checkbox' | 'radio';
  checked: boolean;
  onChange: (checked: boolean) => void;
  children: ReactNode;
  name?: string;
  value?: string;
  disabled?: boolean;
}

export function Choice({ type, checked, onChange, children, name, value, disabled }: Props) {
  return (
    <label className="choice">
      <input
        type={type}
        name={name}
        value={value}
        checked={checked}
        disabled={disabled}
        onChange={(e) => onChange(e.target.checked)}
      />
      {children}
    </label>
  );
}
