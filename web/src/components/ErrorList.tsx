import { Alert, Anchor, List, Text } from '@mantine/core';
import type { FieldError } from '../api/client';
import { lineOf } from '../lib/lines';

interface Props {
  title: string;
  errors: readonly FieldError[];
  id?: string;
  /** When given, a message naming a line offers to go to it. */
  onLine?: (line: number) => void;
}

/** Errors the form has no field for: each with its key, as the API gave it. */
export function ErrorList({ title, errors, id, onLine }: Props) {
  if (errors.length === 0) return null;
  return (
    <Alert color="red" title={title} role="alert" data-testid="form-errors" id={id}>
      <List size="sm" spacing={4}>
        {errors.map((e, i) => {
          const line = onLine === undefined ? null : lineOf(e.message);
          return (
            <List.Item key={`${e.key}-${i}`}>
              {e.key !== '' && (
                <Text span className="mono" fw={600} inherit>
                  {e.key}:{' '}
                </Text>
              )}
              {e.message}
              {line !== null && onLine !== undefined && (
                <>
                  {' '}
                  <Anchor
                    component="button"
                    type="button"
                    size="sm"
                    onClick={() => {
                      onLine(line);
                    }}
                  >
                    go to line {line}
                  </Anchor>
                </>
              )}
            </List.Item>
          );
        })}
      </List>
    </Alert>
  );
}
