/** Radio buttons choosing one named item (a flavor, an image) by its name; `children` renders an item's text. */
import type { ReactNode } from 'react';
import { Choice } from './Choice.js';

interface Props<T> {
  /** The radio group's name. */
  name: string;
  items: readonly T[];
  value: string;
  onChange: (name: string) => void;
  children: (item: T) => ReactNode;
}

export function RadioList<T extends { id: string; name: string }>({
  name,
  items,
  value,
  onChange,
  children,
}: Props<T>) {
  return (
    <>
      {items.map((item) => (
        <Choice
          key={item.id}
          type="radio"
          name={name}
          value={item.name}
          checked={value === item.name}
          onChange={() => onChange(item.name)}
        >
          {children(item)}
        </Choice>
      ))}
    </>
  );
}
