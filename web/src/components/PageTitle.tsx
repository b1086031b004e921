import { useEffect, type ReactNode } from 'react';
import { Group, Title } from '@mantine/core';

/** The page's heading (its one h1) and the document title. */
export function PageTitle({ title, children }: { title: string; children?: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · pingap`;
  }, [title]);
  return (
    <Group justify="space-between" align="center" mb="md" wrap="wrap" gap="sm">
      <Title order={1} size="h2">
        {title}
      </Title>
      {children}
    </Group>
  );
}
