import { useState } from 'react';
import { Alert, Badge, Button, Code, Group, Paper, Select, Stack, Table, Text, Textarea, TextInput, Title } from '@mantine/core';
import { useForm } from '@mantine/form';
import { api, errorText, get } from '../api/client';
import { PageTitle } from '../components/PageTitle';
import { ColumnHeads } from '../components/ColumnHeads';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** "Name: value" lines; blank lines are skipped. */
export function headerLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

type Query = { url: string; method?: string; header?: string[]; server?: string; client?: string };

function explain(query: Query) {
  return get(api.GET('/api/explain', { params: { query } }));
}

/** The report as the client reads it (header pairs come as arrays). */
type Report = Awaited<ReturnType<typeof explain>>;

function Row({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <Table.Tr>
      <Table.Th scope="row" w={140}>
        {label}
      </Table.Th>
      <Table.Td>{children}</Table.Td>
    </Table.Tr>
  );
}

export function Explain() {
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useForm({
    initialValues: { url: '', method: 'GET', headers: '', server: '', client: '' },
    validate: { url: (v) => (v.trim() === '' ? 'Enter a URL, e.g. http://api.example.com/v1/users' : null) },
  });

  const submit = form.onSubmit(async (v) => {
    setBusy(true);
    setError(null);
    try {
      const query = {
        url: v.url.trim(),
        method: v.method,
        header: headerLines(v.headers),
        ...(v.server.trim() !== '' ? { server: v.server.trim() } : {}),
        ...(v.client.trim() !== '' ? { client: v.client.trim() } : {}),
      };
      setReport(await explain(query));
    } catch (e) {
      setReport(null);
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  });

  return (
    <>
      <PageTitle title="Explain" />
      <Text size="sm" c="dimmed" mb="md">
        Which location would serve a request, why the ones tried before it did not, and what would be sent upstream. Nothing is
        sent; plugins run on a fresh copy of the configuration.
      </Text>
      <Paper withBorder p="md" radius="md" mb="lg">
        <form onSubmit={submit} noValidate aria-label="Request to explain">
          <Stack gap="sm">
            <Group align="start" gap="sm" wrap="wrap">
              <Select label="Method" data={METHODS} w={120} allowDeselect={false} {...form.getInputProps('method')} />
              <TextInput
                label="URL"
                placeholder="http://api.example.com:8080/v1/users?x=1"
                style={{ flex: '1 1 300px' }}
                required
                spellCheck={false}
                {...form.getInputProps('url')}
              />
            </Group>
            <Textarea
              label="Headers"
              description="One “Name: value” per line"
              placeholder="X-Env: canary"
              autosize
              minRows={2}
              classNames={{ input: 'mono' }}
              spellCheck={false}
              {...form.getInputProps('headers')}
            />
            <Group gap="sm" wrap="wrap">
              <TextInput label="Server" description="When the URL's port does not say" w={220} {...form.getInputProps('server')} />
              <TextInput label="Client address" description="Default 127.0.0.1" w={220} {...form.getInputProps('client')} />
            </Group>
            <Group>
              <Button type="submit" loading={busy}>
                Explain
              </Button>
            </Group>
          </Stack>
        </form>
      </Paper>
      {error !== null && (
        <Alert color="red" role="alert" title="Cannot explain this request">
          {error}
        </Alert>
      )}
      {report !== null && (
        <Stack gap="md" data-testid="explain-result">
          <Alert color={report.location != null ? 'green' : 'orange'} title={report.location != null ? `Served by location ${report.location}` : 'No location serves it'}>
            {report.answer != null ? report.answer : report.upstream != null ? `Proxied to ${report.upstream}` : 'No upstream'}
          </Alert>
          <Table.ScrollContainer minWidth={420}>
            <Table aria-label="Routing">
              <Table.Tbody>
                <Row label="Server">
                  {report.server}
                  {report.server_note != null && (
                    <Text size="xs" c="dimmed">
                      {report.server_note}
                    </Text>
                  )}
                </Row>
                <Row label="Host">{report.host}</Row>
                <Row label="Location">{report.location ?? '—'}</Row>
                <Row label="Plugins">{report.plugins.length === 0 ? '—' : report.plugins.join(' → ')}</Row>
                <Row label="Rewrite">{report.rewrite ?? '—'}</Row>
                <Row label="Upstream">{report.upstream ?? '—'}</Row>
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Title order={2} size="h4">
            Locations tried, in order
          </Title>
          <Table.ScrollContainer minWidth={480}>
            <Table striped aria-label="Locations tried, in order">
              <ColumnHeads columns={['#', 'Location', 'Result', 'Why not']} />
              <Table.Tbody>
                {report.candidates.map((c, i) => (
                  <Table.Tr key={c.location} data-testid={`candidate-${c.location}`}>
                    <Table.Td>{i + 1}</Table.Td>
                    <Table.Th scope="row">{c.location}</Table.Th>
                    <Table.Td>
                      <Badge color={c.matched ? 'green' : c.tried ? 'gray' : 'gray'} variant={c.matched ? 'filled' : 'light'}>
                        {c.matched ? 'match' : c.tried ? 'no match' : 'not tried'}
                      </Badge>
                    </Table.Td>
                    <Table.Td>{c.reason ?? (c.tried ? '' : 'its hosts cannot match this host')}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          {report.sent != null && (
            <>
              <Title order={2} size="h4">
                Sent upstream
              </Title>
              <Code block>
                {`${report.sent.method} ${report.sent.path}\n${report.sent.headers.map(([k, v]) => `${k}: ${v}`).join('\n')}`}
              </Code>
            </>
          )}
        </Stack>
      )}
    </>
  );
}
