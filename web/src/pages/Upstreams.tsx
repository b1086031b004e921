import { Alert, Badge, Group, Paper, Stack, Table, Text, Title } from '@mantine/core';
import { api, get, type BackendView } from '../api/client';
import { useLoad } from '../lib/useLoad';
import { useNow } from '../lib/useNow';
import { formatDateTime, relativeTime } from '../lib/time';
import { PageTitle } from '../components/PageTitle';
import { ColumnHeads, numeric } from '../components/ColumnHeads';

const POLL_MS = 1000;

function circuitColor(c: string): string {
  return c === 'closed' ? 'green' : c === 'open' ? 'red' : 'orange';
}

function BackendRow({ b, now }: { b: BackendView; now: number }) {
  return (
    <Table.Tr data-testid={`backend-${b.addr}`}>
      <Table.Th scope="row" className="mono" fw={500}>
        {b.addr}
      </Table.Th>
      <Table.Td>
        <Badge color={b.serving ? 'green' : 'red'} variant="filled" aria-label={b.serving ? 'up' : 'down'}>
          {b.serving ? 'up' : 'down'}
        </Badge>
      </Table.Td>
      <Table.Td>
        <Group gap={4} wrap="nowrap">
          <Badge color={b.checked_up ? 'green' : 'red'} variant="light">
            {b.checked_up ? 'check up' : 'check down'}
          </Badge>
          {b.ejected && (
            <Badge color="red" variant="light">
              ejected
            </Badge>
          )}
        </Group>
      </Table.Td>
      <Table.Td>
        <Badge color={circuitColor(b.circuit)} variant="light">
          {b.circuit.replace('_', '-')}
        </Badge>
      </Table.Td>
      <Table.Td ta="right">{b.in_flight}</Table.Td>
      <Table.Td ta="right">{b.weight}</Table.Td>
      <Table.Td>
        {b.last_check === null || b.last_check === undefined ? (
          <Text size="sm" c="dimmed">
            no active check
          </Text>
        ) : (
          <Text size="sm" title={formatDateTime(b.last_check.at_ms)}>
            <Text span c={b.last_check.passed ? 'var(--mantine-color-green-light-color)' : 'var(--mantine-color-red-light-color)'} fw={600} inherit>
              {b.last_check.passed ? 'passed' : 'failed'}
            </Text>{' '}
            {relativeTime(b.last_check.at_ms, now)}
            {b.last_check.reason !== '' && ` — ${b.last_check.reason}`}
          </Text>
        )}
      </Table.Td>
    </Table.Tr>
  );
}

export function Upstreams() {
  const { data, error } = useLoad((signal) => get(api.GET('/api/upstreams', { signal })), 'upstreams', POLL_MS);
  const now = useNow(1000);
  return (
    <>
      <PageTitle title="Upstreams">
        <Badge variant="dot" color={error === null ? 'green' : 'red'}>
          {error === null ? 'live, every second' : 'not updating'}
        </Badge>
      </PageTitle>
      {error !== null && (
        <Alert color="red" mb="md" role="alert">
          {error}
        </Alert>
      )}
      <Stack gap="md">
        {data?.length === 0 && <Text c="dimmed">No upstreams are configured.</Text>}
        {data?.map((u) => {
          const up = u.backends.filter((b) => b.serving).length;
          return (
            <Paper key={u.name} withBorder p="sm" radius="md" component="section" aria-labelledby={`upstream-${u.name}`}>
              <Group justify="space-between" mb="xs">
                <Title order={2} size="h4" id={`upstream-${u.name}`}>
                  {u.name}
                </Title>
                <Group gap="xs">
                  <Badge color={up === u.backends.length ? 'green' : up === 0 ? 'red' : 'orange'} variant="light">
                    {up}/{u.backends.length} up
                  </Badge>
                  <Badge color="gray" variant="light">
                    {u.health_check ? 'actively checked' : 'no active check'}
                  </Badge>
                </Group>
              </Group>
              <Table.ScrollContainer minWidth={720}>
                <Table aria-label={`Backends of ${u.name}`}>
                  <ColumnHeads
                    columns={[
                      'Backend',
                      'State',
                      'Health',
                      'Circuit',
                      numeric('In flight'),
                      numeric('Weight'),
                      'Last check',
                    ]}
                  />
                  <Table.Tbody>
                    {u.backends.map((b) => (
                      <BackendRow key={b.addr} b={b} now={now} />
                    ))}
                  </Table.Tbody>
                </Table>
              </Table.ScrollContainer>
            </Paper>
          );
        })}
      </Stack>
    </>
  );
}
