// The frames of /api/stats/stream, kept for the whole signed-in session (not only while the
// Overview is shown), so the last 15 minutes are there when one comes back to it.
import { useSyncExternalStore } from 'react';
import type { StatsFrame } from '../api/client';
import { appendFrame } from './stats';

type Listener = () => void;

class StatsStore {
  private frames: StatsFrame[] = [];
  private listeners = new Set<Listener>();

  get = (): StatsFrame[] => this.frames;

  subscribe = (l: Listener): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  push(frame: StatsFrame): void {
    const next = appendFrame(this.frames, frame);
    if (next === this.frames) return;
    this.frames = next;
    for (const l of this.listeners) l();
  }

  clear(): void {
    this.frames = [];
    for (const l of this.listeners) l();
  }
}

export const statsStore = new StatsStore();

export function useStatsFrames(): StatsFrame[] {
  return useSyncExternalStore(statsStore.subscribe, statsStore.get);
}
