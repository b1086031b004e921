import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { errorText } from '../api/client';

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads with `load` when `key` changes, and again every `intervalMs` when given (the next
 * load starts once the previous one ended, so slow answers never pile up). Loads of a key no
 * longer current are aborted.
 */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, key: string, intervalMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  useLayoutEffect(() => {
    loadRef.current = load;
  });

  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      setLoading(true);
      try {
        const value = await loadRef.current(controller.signal);
        if (controller.signal.aborted) return;
        setData(value);
        setError(null);
      } catch (e) {
        if (controller.signal.aborted) return;
        setError(errorText(e));
      } finally {
        if (!controller.signal.aborted) {
          setLoading(false);
          if (intervalMs !== undefined) timer = setTimeout(() => void run(), intervalMs);
        }
      }
    };
    void run();
    return () => {
      controller.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [key, intervalMs, tick]);

  const reload = useCallback(() => {
    setTick((t) => t + 1);
  }, []);
  return { data, error, loading, reload };
}
