/** The "Name" input of a resource: lower-case letters, digits and dashes, as the API accepts them. */
import { Field } from './Field.js';

export const NAME_PATTERN = '[a-z0-9][a-z0-9\\-]{0,62}';

export function NameField({ value, onChange }: { value: string; onChange: (value: string) => void }) {
  return <Field label="Name" required pattern={NAME_PATTERN} value={value} onChange={onChange} />;
}
