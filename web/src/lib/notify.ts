import { notifications } from '@mantine/notifications';
import type { WriteResult } from '../api/client';
import { planSummary } from './plan';

const OUTCOME: Record<string, string> = {
  swapped: 'serving new requests now',
  unchanged: 'nothing changed',
  upgrading: 'a new process is taking over (graceful upgrade)',
};

/** Tells what an applied change did. */
export function notifyApplied(what: string, result: WriteResult): void {
  const version = result.version !== null && result.version !== undefined ? `version ${result.version}, ` : '';
  notifications.show({
    closeButtonProps: { 'aria-label': 'Dismiss' },
    color: result.outcome === 'unchanged' ? 'gray' : 'green',
    title: `${what}: applied`,
    message: `${version}${OUTCOME[result.outcome] ?? result.outcome} (${planSummary({
      changes: result.changes,
      upgrade: [],
      text: '',
    })}).`,
  });
  window.dispatchEvent(new Event(APPLIED_EVENT));
}

/** Sent on window after every applied change, for views that show the running version. */
export const APPLIED_EVENT = 'pingap:applied';
