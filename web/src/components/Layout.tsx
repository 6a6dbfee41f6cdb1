/** The frame of every page: a skip link, the header (tenant switcher, theme, user), the navigation. */
import { useState, type ReactNode } from 'react';
import { useAuth } from '../auth.js';
import { Link } from '../router.js';
import { LiveRegion } from './LiveRegion.js';
import { ThemeToggle } from './ThemeToggle.js';

export interface NavItem {
  path: string;
  label: string;
  /** Shown when the user holds any of these (none: always). */
  anyOf?: string[];
}

export const NAV: NavItem[] = [
  { path: '/', label: 'Overview' },
  { path: '/vms', label: 'VMs', anyOf: ['vm:read'] },
  { path: '/images', label: 'Images', anyOf: ['image:read'] },
  { path: '/networks', label: 'Networks', anyOf: ['network:read'] },
  { path: '/security-groups', label: 'Security groups', anyOf: ['secgroup:read'] },
  { path: '/tenants', label: 'Tenants' },
  { path: '/users', label: 'Users', anyOf: ['platform:user:read', 'member:read'] },
  { path: '/roles', label: 'Roles', anyOf: ['role:read'] },
  { path: '/tokens', label: 'API tokens' },
  { path: '/quotas', label: 'Quotas', anyOf: ['quota:read'] },
  { path: '/audit', label: 'Audit log', anyOf: ['audit:read', 'platform:audit:read'] },
  { path: '/alerts', label: 'Security alerts', anyOf: ['security:read', 'platform:security:read'] },
  { path: '/compliance', label: 'Compliance', anyOf: ['platform:security:read'] },
];

export function Layout({ path, children }: { path: string; children: ReactNode }) {
  const auth = useAuth();
  const [menuOpen, setMenuOpen] = useState(false);
  const visible = NAV.filter((item) => !item.anyOf || item.anyOf.some((p) => auth.can(p)));
  const active = (item: NavItem) => (item.path === '/' ? path === '/' : path.startsWith(item.path));
  return (
    <div className="app">
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="ghost menu-button"
          aria-expanded={menuOpen}
          aria-controls="nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          ☰ <span className="visually-hidden">Menu</span>
        </button>
        <span className="brand">Rampart</span>
        <label className="tenant-switcher">
          <span>Tenant</span>
          <select
            value={auth.tenant ?? ''}
            onChange={(e) => auth.chooseTenant(e.target.value)}
            aria-label="Tenant"
          >
            {auth.tenant === null && <option value="">choose…</option>}
            {auth.tenants.map((t) => (
              <option key={t.id} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
        <span className="spacer" />
        <ThemeToggle />
        <span className="user" aria-label="Signed in as">
          {auth.whoami?.user.username}
        </span>
        <button type="button" onClick={() => void auth.logout()}>
          Log out
        </button>
      </header>
      <nav id="nav" className={menuOpen ? 'nav open' : 'nav'} aria-label="Main">
        <ul>
          {visible.map((item) => (
            <li key={item.path}>
              <Link
                href={item.path}
                aria-current={active(item) ? 'page' : undefined}
                onClick={() => setMenuOpen(false)}
              >
                {item.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
      <LiveRegion />
    </div>
  );
}
