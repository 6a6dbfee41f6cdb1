/** Username, password and (once MFA is on) the authenticator's code: POST /v1/auth/login. */
import { useState, type FormEvent } from 'react';
import { login } from '../api/session.js';
import { Field } from '../components/Field.js';
import { Notice } from '../components/Notice.js';

export function Login() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const trimmed = totp.trim();
    setError(await login({ username: username.trim(), password, ...(trimmed ? { totp: trimmed } : {}) }));
    setBusy(false);
  };
  return (
    <main id="main" className="login">
      <form className="card login-card" onSubmit={(e) => void submit(e)} aria-labelledby="login-title">
        <h1 id="login-title">Rampart</h1>
        <p className="muted">Sign in to the console</p>
        <Field
          label="Username"
          name="username"
          autoComplete="username"
          required
          value={username}
          onChange={setUsername}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={setPassword}
        />
        <Field
          label={
            <>
              Authentication code <span className="muted">(if MFA is on)</span>
            </>
          }
          name="totp"
          inputMode="numeric"
          autoComplete="one-time-code"
          pattern="[0-9]{6}"
          value={totp}
          onChange={setTotp}
        />
        <Notice error={error} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
