/**
 * Who is logged in and what they may do: whoami for the chosen tenant (its permissions decide which
 * actions the console shows; the server enforces them anyway), the tenant switcher's state, logout.
 */
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { get, setTenant } from './api/client.js';
import { getSession, logout, onSessionChange, type StoredSession } from './api/session.js';
import type { List, Tenant, WhoAmI } from './api/types.js';

const TENANT_KEY = 'rampart.tenant';

export interface Auth {
  session: StoredSession | null;
  whoami: WhoAmI | null;
  /** Tenants the switcher offers: all for platform readers, else your memberships. */
  tenants: { id: string; name: string }[];
  tenant: string | null;
  chooseTenant: (name: string) => void;
  can: (permission: string) => boolean;
  reload: () => Promise<void>;
  logout: () => Promise<void>;
  error: string | null;
}

const AuthContext = createContext<Auth | null>(null);

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error('useAuth outside AuthProvider');
  return auth;
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [session, setSessionState] = useState(getSession());
  const [whoami, setWhoami] = useState<WhoAmI | null>(null);
  const [tenants, setTenants] = useState<{ id: string; name: string }[]>([]);
  const [tenant, setTenantState] = useState<string | null>(sessionStorage.getItem(TENANT_KEY));
  const [error, setError] = useState<string | null>(null);

  useEffect(() => onSessionChange(setSessionState), []);

  const load = useCallback(async () => {
    if (!session) {
      setWhoami(null);
      return;
    }
    setTenant(tenant);
    try {
      const me = await get<WhoAmI>('/v1/auth/whoami');
      setError(null);
      if (me.restriction) {
        setWhoami(me);
        return;
      }
      let list: { id: string; name: string }[] = me.tenants.map((m) => m.tenant);
      try {
        list = (await get<List<Tenant>>('/v1/tenants', { tenant: false })).items.map((t) => ({
          id: t.id,
          name: t.name,
        }));
      } catch {
        // keep the memberships
      }
      setTenants(list);
      if (!tenant && me.tenant) {
        setTenantState(me.tenant.name);
        sessionStorage.setItem(TENANT_KEY, me.tenant.name);
        setTenant(me.tenant.name);
      }
      setWhoami(me);
    } catch (e) {
      setError((e as Error).message);
      if (tenant) {
        // A tenant that went away: fall back to the default.
        sessionStorage.removeItem(TENANT_KEY);
        setTenantState(null);
      }
    }
  }, [session?.username, session?.restriction, tenant]);

  useEffect(() => {
    void load();
  }, [load]);

  const chooseTenant = (name: string) => {
    sessionStorage.setItem(TENANT_KEY, name);
    setTenant(name);
    setTenantState(name);
  };
  const can = (permission: string) => whoami?.permissions.includes(permission) ?? false;
  const doLogout = async () => {
    sessionStorage.removeItem(TENANT_KEY);
    setTenant(null);
    setTenantState(null);
    await logout();
  };
  const value: Auth = {
    session,
    whoami,
    tenants,
    tenant,
    chooseTenant,
    can,
    reload: load,
    logout: doLogout,
    error,
  };
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}
