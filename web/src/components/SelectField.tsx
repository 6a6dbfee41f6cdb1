/** A labelled select of string options, optionally led by a blank choice ("any", "none"). */
import type { ReactNode } from 'react';

export interface Option {
  value: string;
  label: string;
}

interface Props {
  label: ReactNode;
  value: string;
  onChange: (value: string) => void;
  options: readonly (string | Option)[];
  /** The text of a leading option whose value is empty. */
  blank?: string;
  name?: string;
}

export function SelectField({ label, value, onChange, options, blank, name }: Props) {
  return (
    <label>
      {label}
      <select name={name} value={value} onChange={(e) => onChange(e.target.value)}>
        {blank !== undefined && <option value="">{blank}</option>}
        {options.map((o) =>
          typeof o === 'string' ? (
            <option key={o}>{o}</option>
          ) : (
            <option key={o.value} value={o.value}>
              {o.label}
            </option>
          ),
        )}
      </select>
    </label>
  );
}
