import { Alert } from '@mantine/core';
import { useConnection } from '../lib/connection';

/** Says so while the API cannot be reached (every request failing at the network level). */
export function ConnectionBanner() {
  const { unreachable } = useConnection();
  if (!unreachable) return null;
  return (
    <Alert color="red" variant="filled" title="API unreachable" role="alert" data-testid="api-unreachable">
      The pingap admin API does not answer. Retrying every few seconds; what is shown may be out of date.
    </Alert>
  );
}
