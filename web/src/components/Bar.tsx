/** A usage bar (quota or capacity): `used` of `limit`, -1 meaning unlimited. */
export function Bar({
  label,
  used,
  limit,
  unit = '',
}: {
  label: string;
  used: number;
  limit: number;
  unit?: string;
}) {
  const unlimited = limit < 0;
  const percent =
    unlimited || limit === 0 ? (used > 0 && limit === 0 ? 100 : 0) : Math.min(100, (used / limit) * 100);
  const level = percent >= 90 ? 'high' : percent >= 70 ? 'mid' : 'low';
  const text = `${used}${unit} of ${unlimited ? 'unlimited' : `${limit}${unit}`}`;
  return (
    <div className="bar">
      <div className="bar-label">
        <span>{label}</span>
        <span>{text}</span>
      </div>
      <meter
        className={`bar-meter ${level}`}
        min={0}
        max={100}
        value={percent}
        aria-label={`${label}: ${text}`}
      />
    </div>
  );
}
