import type { PlanView } from '../api/client';

export interface PlanCounts {
  added: number;
  changed: number;
  removed: number;
}

export function planCounts(plan: PlanView): PlanCounts {
  const counts = { added: 0, changed: 0, removed: 0 };
  for (const e of plan.changes.entries) counts[e.kind]++;
  return counts;
}

export function isEmptyPlan(plan: PlanView): boolean {
  return plan.changes.entries.length === 0;
}

/** "1 to add, 2 to change, 0 to remove", as `pingap plan` says it. */
export function planSummary(plan: PlanView): string {
  const c = planCounts(plan);
  return `${c.added} to add, ${c.changed} to change, ${c.removed} to remove`;
}

export const CHANGE_SIGN = { added: '+', removed: '-', changed: '~' } as const;
export const CHANGE_COLOR = { added: 'green', removed: 'red', changed: 'blue' } as const;
export const IMPACT_COLOR = { upgrade: 'grape', state_reset: 'orange', note: 'gray' } as const;
export const IMPACT_LABEL = { upgrade: 'graceful upgrade', state_reset: 'state resets', note: 'note' } as const;
