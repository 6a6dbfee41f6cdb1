/** Loads `path` (re-loading when it, the tenant or `refreshMs` ticks change): data, error, reload. */
import { useCallback, useEffect, useState } from 'react';
import { get, type RequestOptions } from './api/client.js';
import { useAuth } from './auth.js';

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

export function useApi<T>(
  path: string | null,
  options: RequestOptions & { refreshMs?: number } = {},
): Loaded<T> {
  const { tenant } = useAuth();
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const key = JSON.stringify(options.query ?? {});
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setLoading(true);
    get<T>(path, options)
      .then((d) => {
        if (!live) return;
        setData(d);
        setError(null);
      })
      .catch((e: Error) => live && setError(e.message))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [path, tenant, key, tick]);
  useEffect(() => {
    if (!options.refreshMs) return;
    const id = setInterval(() => setTick((t) => t + 1), options.refreshMs);
    return () => clearInterval(id);
  }, [options.refreshMs]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}
