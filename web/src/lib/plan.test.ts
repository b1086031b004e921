import { describe, expect, it } from 'vitest';
import type { PlanView } from '../api/client';
import { isEmptyPlan, planCounts, planSummary } from './plan';

const plan: PlanView = {
  upgrade: [],
  text: '',
  changes: {
    new_warnings: [],
    entries: [
      { entity: 'locations.api', kind: 'changed', keys: [{ key: 'upstream', before: '"blue"', after: '"green"' }], impacts: [] },
      { entity: 'upstreams.x', kind: 'added', keys: [], impacts: [] },
      { entity: 'upstreams.y', kind: 'changed', keys: [], impacts: [] },
    ],
  },
};

describe('plan helpers', () => {
  it('counts entries by kind', () => {
    expect(planCounts(plan)).toEqual({ added: 1, changed: 2, removed: 0 });
    expect(planSummary(plan)).toBe('1 to add, 2 to change, 0 to remove');
    expect(isEmptyPlan(plan)).toBe(false);
    expect(isEmptyPlan({ ...plan, changes: { entries: [], new_warnings: [] } })).toBe(true);
  });
});
