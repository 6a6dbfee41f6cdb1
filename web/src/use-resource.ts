/**
 * A list from the API and the changes made to it: its items, the load's or the last change's error,
 * and `run` for a change (busy meanwhile), after which the list (and `onChange`) reloads.
 */
import type { RequestOptions } from './api/client.js';
import type { List } from './api/types.js';
import { useAction } from './use-action.js';
import { useApi } from './use-api.js';

export function useResource<T>(
  path: string | null,
  options: RequestOptions & { refreshMs?: number } = {},
  onChange?: () => void,
) {
  const list = useApi<List<T>>(path, options);
  const action = useAction(() => {
    list.reload();
    onChange?.();
  });
  return {
    items: list.data?.items ?? [],
    loaded: list.data !== null,
    error: list.error ?? action.error,
    reload: list.reload,
    busy: action.busy,
    run: action.run,
  };
}
