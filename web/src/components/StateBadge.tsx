/** A VM state, alert status or verdict as a coloured badge (the text says it, colour only helps). */
export function Badge({ value, kind = 'state' }: { value: string; kind?: string }) {
  return <span className={`badge ${kind}-${value.replace(/[^a-z0-9-]/gi, '')}`}>{value}</span>;
}
