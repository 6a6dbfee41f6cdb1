/** Light, dark or the system's choice (prefers-color-scheme); the choice (not a secret) is remembered. */
import { useEffect, useState } from 'react';

type Theme = 'auto' | 'light' | 'dark';
const KEY = 'rampart.theme';
const NEXT: Record<Theme, Theme> = { auto: 'light', light: 'dark', dark: 'auto' };

export function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem(KEY) as Theme | null) ?? 'auto');
  useEffect(() => {
    if (theme === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    localStorage.setItem(KEY, theme);
  }, [theme]);
  return (
    <button
      type="button"
      className="ghost"
      onClick={() => setTheme(NEXT[theme])}
      aria-label={`Theme: ${theme}. Change theme`}
    >
      {theme === 'dark' ? '☾' : theme === 'light' ? '☀' : '◐'} {theme}
    </button>
  );
}
