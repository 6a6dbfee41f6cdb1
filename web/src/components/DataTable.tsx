/**
 * A table in its sideways-scrolling wrap: a header row from the columns, a row per item, an optional
 * actions column (its header visually hidden) and an optional row that says the table is empty.
 */
import type { ReactNode } from 'react';

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  /** The cell's class, e.g. 'wrap' for free text that may wrap on a narrow screen. */
  className?: string;
}

interface Props<T> {
  columns: Column<T>[];
  rows: readonly T[];
  rowKey: (row: T) => string | number;
  /** The last cell of each row (its buttons); without it there is no actions column. */
  actions?: (row: T) => ReactNode;
  /** Shown in a row of its own when given and there are no rows. */
  empty?: ReactNode;
  /** A visually hidden caption naming the table. */
  caption?: string;
  /** Makes the wrap a region with this name. */
  label?: string;
}

export function DataTable<T>({ columns, rows, rowKey, actions, empty, caption, label }: Props<T>) {
  const region = label ? { role: 'region', 'aria-label': label } : {};
  return (
    <div className="table-wrap" {...region}>
      <table>
        {caption && <caption className="visually-hidden">{caption}</caption>}
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.header} scope="col">
                {c.header}
              </th>
            ))}
            {actions && (
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={rowKey(row)}>
              {columns.map((c) => (
                <td key={c.header} className={c.className}>
                  {c.cell(row)}
                </td>
              ))}
              {actions && <td>{actions(row)}</td>}
            </tr>
          ))}
          {empty && rows.length === 0 && (
            <tr>
              <td colSpan={columns.length + (actions ? 1 : 0)} className="muted">
                {empty}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
