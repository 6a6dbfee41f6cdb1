/**
 * A small SVG line chart of one or two series over time (no library; styled by CSS classes). The SVG
 * is an image whose <title> names it and whose <desc> reads out the latest values for screen readers.
 */
import { useId } from 'react';

export interface Series {
  name: string;
  values: number[];
  className: string;
}

export function LineChart({
  title,
  series,
  unit,
  height = 120,
}: {
  title: string;
  series: Series[];
  unit: string;
  height?: number;
}) {
  const id = useId();
  const width = 400;
  const count = Math.max(0, ...series.map((s) => s.values.length));
  const peak = Math.max(0, ...series.flatMap((s) => s.values));
  const max = Math.max(1, peak);
  const x = (i: number) => (count <= 1 ? width : (i / (count - 1)) * width);
  const y = (v: number) => height - (v / max) * (height - 10) - 5;
  const path = (values: number[]) =>
    values.map((v, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const last = series.map((s) => `${s.name} ${format(s.values.at(-1) ?? 0)}${unit}`).join(', ');
  return (
    <figure className="chart" data-samples={count}>
      <figcaption>
        {title}{' '}
        <span className="muted">
          (max {format(max)}
          {unit})
        </span>
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-labelledby={`${id}-title ${id}-desc`}
        preserveAspectRatio="none"
      >
        <title id={`${id}-title`}>{title}</title>
        <desc id={`${id}-desc`}>
          {`${count} sample${count === 1 ? '' : 's'}; latest ${last}; highest ${format(peak)}${unit}`}
        </desc>
        <line className="chart-axis" x1={0} y1={height - 5} x2={width} y2={height - 5} />
        {series.map((s) => (
          <path key={s.name} className={`chart-line ${s.className}`} d={path(s.values)} />
        ))}
      </svg>
      <div className="chart-legend">
        {series.map((s) => (
          <span key={s.name} className={`legend ${s.className}`}>
            {s.name}: {format(s.values.at(-1) ?? 0)}
            {unit}
          </span>
        ))}
      </div>
    </figure>
  );
}

function format(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(value < 10 ? 1 : 0);
}
