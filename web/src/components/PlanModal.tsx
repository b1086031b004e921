import { useState } from 'react';
import { Alert, Button, Group, Modal, Stack } from '@mantine/core';
import { errorText, type PlanView } from '../api/client';
import { isEmptyPlan } from '../lib/plan';
import { PlanDisplay } from './PlanDisplay';

export interface PendingChange {
  title: string;
  plan: PlanView;
  confirmLabel: string;
  /** Applies the change for real; a thrown error is shown in the dialog. */
  apply: () => Promise<void>;
}

/** Shows the plan of a change (a dry run's answer) and applies it only when confirmed. */
export function PlanModal({ pending, onClose }: { pending: PendingChange | null; onClose: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const close = () => {
    if (busy) return;
    setError(null);
    onClose();
  };

  const confirm = async () => {
    if (pending === null) return;
    setBusy(true);
    setError(null);
    try {
      await pending.apply();
      setBusy(false);
      onClose();
    } catch (e) {
      setBusy(false);
      setError(errorText(e));
    }
  };

  return (
    <Modal opened={pending !== null} onClose={close} title={pending?.title ?? ''} size="xl" closeButtonProps={{ 'aria-label': 'Cancel' }}>
      {pending !== null && (
        <Stack>
          <PlanDisplay plan={pending.plan} />
          {error !== null && (
            <Alert color="red" role="alert" title="Not applied">
              {error}
            </Alert>
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={close} disabled={busy} data-autofocus>
              Cancel
            </Button>
            <Button onClick={() => void confirm()} loading={busy} disabled={isEmptyPlan(pending.plan)}>
              {pending.confirmLabel}
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
