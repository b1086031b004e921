import { Alert, List, Text } from '@mantine/core';
import type { FieldError } from '../api/client';

/** Errors the form has no field for: each with its key, as the API gave it. */
export function ErrorList({ title, errors }: { title: string; errors: readonly FieldError[] }) {
  if (errors.length === 0) return null;
  return (
    <Alert color="red" title={title} role="alert" data-testid="form-errors">
      <List size="sm" spacing={4}>
        {errors.map((e, i) => (
          <List.Item key={`${e.key}-${i}`}>
            {e.key !== '' && (
              <Text span className="mono" fw={600} inherit>
                {e.key}:{' '}
              </Text>
            )}
            {e.message}
          </List.Item>
        ))}
      </List>
    </Alert>
  );
}
