// Server-Sent Events from the admin API (same origin: the session cookie goes along). The
// browser reconnects by itself after a network error; when the API refused the stream (a 401
// after the session ended, say) the EventSource is closed, so the API is asked why
// (/api/session, whose 401 ends the session in the dashboard) and the stream is opened again.
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api } from '../api/client';
import { connection } from './connection';

export type StreamState = 'connecting' | 'open' | 'retrying';

const RETRY_MS = 2000;

async function probe(): Promise<void> {
  try {
    await api.GET('/api/session');
  } catch {
    // the middleware has marked the API unreachable
  }
}

export function useEventSource(
  url: string | null,
  handlers: Record<string, (data: string) => void>,
): StreamState {
  const [state, setState] = useState<StreamState>('connecting');
  const handlersRef = useRef(handlers);
  useLayoutEffect(() => {
    handlersRef.current = handlers;
  });

  useEffect(() => {
    if (url === null) return;
    let source: EventSource | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;

    const open = () => {
      setState('connecting');
      const es = new EventSource(url);
      source = es;
      es.onopen = () => {
        connection.reachable();
        setState('open');
      };
      for (const name of Object.keys(handlersRef.current)) {
        es.addEventListener(name, (ev: MessageEvent<string>) => {
          handlersRef.current[name]?.(ev.data);
        });
      }
      es.onerror = () => {
        if (stopped) return;
        setState('retrying');
        void probe();
        if (es.readyState === EventSource.CLOSED) {
          timer = setTimeout(() => {
            if (!stopped) open();
          }, RETRY_MS);
        }
      };
    };
    open();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      source?.close();
    };
  }, [url]);

  return state;
}
