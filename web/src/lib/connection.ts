// What the dashboard knows about its link to the API: signed in or not, whether the session
// ended under it, and whether the API answers at all. A tiny external store for
// useSyncExternalStore, fed by the API client's middleware and the event streams.
import { useSyncExternalStore } from 'react';

export type AuthState = 'checking' | 'signed-out' | 'signed-in' | 'expired';

export interface ConnectionState {
  auth: AuthState;
  user: string | null;
  /** The last request could not reach the API. */
  unreachable: boolean;
}

type Listener = () => void;

class Connection {
  private state: ConnectionState = { auth: 'checking', user: null, unreachable: false };
  private listeners = new Set<Listener>();

  get = (): ConnectionState => this.state;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private set(patch: Partial<ConnectionState>): void {
    const next = { ...this.state, ...patch };
    if (
      next.auth === this.state.auth &&
      next.user === this.state.user &&
      next.unreachable === this.state.unreachable
    ) {
      return;
    }
    this.state = next;
    for (const l of this.listeners) l();
  }

  signedIn(user: string): void {
    this.set({ auth: 'signed-in', user });
  }

  signedOut(): void {
    this.set({ auth: 'signed-out', user: null });
  }

  /** A 401 from the API: while signed in, the session has ended (expired or revoked). */
  unauthorized(): void {
    if (this.state.auth === 'signed-in') this.set({ auth: 'expired', user: null });
  }

  reachable(): void {
    this.set({ unreachable: false });
  }

  unreachable(): void {
    this.set({ unreachable: true });
  }
}

export const connection = new Connection();

export function useConnection(): ConnectionState {
  return useSyncExternalStore(connection.subscribe, connection.get);
}
