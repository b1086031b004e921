import { useState } from 'react';
import { Alert, Badge, Button, Group, Loader, Paper, Select, Stack, Table, Tabs, Text, Title } from '@mantine/core';
import { api, errorText, get, isPlan, type PlanView, type VersionSummary } from '../api/client';
import { notifyApplied } from '../lib/notify';
import { useLoad } from '../lib/useLoad';
import { useNow } from '../lib/useNow';
import { joinDocuments } from '../lib/textdiff';
import { formatDateTime, relativeTime } from '../lib/time';
import { PageTitle } from '../components/PageTitle';
import { PlanDisplay } from '../components/PlanDisplay';
import { PlanModal, type PendingChange } from '../components/PlanModal';
import { TextDiff } from '../components/TextDiff';
import { ColumnHeads } from '../components/ColumnHeads';

interface DiffResult {
  from: number;
  to: number;
  plan: PlanView;
  before: string;
  after: string;
}

async function loadDiff(from: number, to: number): Promise<DiffResult> {
  const [plan, a, b] = await Promise.all([
    get(api.GET('/api/diff', { params: { query: { from, to } } })),
    get(api.GET('/api/history/{version}', { params: { path: { version: from } } })),
    get(api.GET('/api/history/{version}', { params: { path: { version: to } } })),
  ]);
  return { from, to, plan, before: joinDocuments(a.documents), after: joinDocuments(b.documents) };
}

function versionLabel(v: VersionSummary): string {
  return `${v.number} · ${v.trigger}${v.running ? ' (running)' : ''}`;
}

export function History() {
  const [reloads, setReloads] = useState(0);
  const history = useLoad((signal) => get(api.GET('/api/history', { signal })), `history:${reloads}`, 5000);
  const [chosenFrom, setFrom] = useState<string | null>(null);
  const [chosenTo, setTo] = useState<string | null>(null);
  const [diff, setDiff] = useState<DiffResult | null>(null);
  const [diffError, setDiffError] = useState<string | null>(null);
  const [diffBusy, setDiffBusy] = useState(false);
  const [pending, setPending] = useState<PendingChange | null>(null);
  const [rollbackError, setRollbackError] = useState<string | null>(null);
  const [busyVersion, setBusyVersion] = useState<number | null>(null);

  const versions = history.data ?? [];
  // By default, compare the version before the running one with the running one.
  const running = versions.find((v) => v.running) ?? versions[0];
  const previous = versions.find((v) => running !== undefined && v.number < running.number);
  const from = chosenFrom ?? (previous !== undefined ? String(previous.number) : null);
  const to = chosenTo ?? (running !== undefined ? String(running.number) : null);

  const showDiff = async () => {
    if (from === null || to === null) return;
    setDiffBusy(true);
    setDiffError(null);
    try {
      setDiff(await loadDiff(Number(from), Number(to)));
    } catch (e) {
      setDiffError(errorText(e));
    } finally {
      setDiffBusy(false);
    }
  };

  const rollback = async (version: number) => {
    setRollbackError(null);
    setBusyVersion(version);
    try {
      const call = (dryRun: boolean) =>
        get(api.POST('/api/rollback/{version}', { params: { path: { version }, query: dryRun ? { dry_run: true } : {} } }));
      const plan = await call(true);
      if (!isPlan(plan)) throw new Error('the API applied a dry run');
      setPending({
        title: `Roll back to version ${version}`,
        plan,
        confirmLabel: 'Roll back',
        apply: async () => {
          const result = await call(false);
          if (isPlan(result)) throw new Error('the API answered a plan');
          notifyApplied(`Rollback to version ${version}`, result);
          setReloads((r) => r + 1);
        },
      });
    } catch (e) {
      setRollbackError(errorText(e));
    } finally {
      setBusyVersion(null);
    }
  };

  const options = versions.map((v) => ({ value: String(v.number), label: versionLabel(v) }));
  const now = useNow(1000);

  return (
    <>
      <PageTitle title="History" />
      <Stack gap="lg">
        {history.error !== null && (
          <Alert color="red" role="alert">
            {history.error}
          </Alert>
        )}
        {rollbackError !== null && (
          <Alert color="red" role="alert" title="Rollback refused">
            {rollbackError}
          </Alert>
        )}
        {history.loading && history.data === undefined && <Loader aria-label="Loading the history" />}
        <Table.ScrollContainer minWidth={760}>
          <Table striped aria-label="Versions, newest first">
            <ColumnHeads
              columns={[
                'Version',
                'When',
                'Trigger',
                'Who',
                'Note',
                'Digest',
                { key: 'actions', label: <span className="visually-hidden">Actions</span> },
              ]}
            />
            <Table.Tbody>
              {versions.map((v) => {
                const at = Date.parse(v.time);
                return (
                  <Table.Tr key={v.number} data-testid={`version-${v.number}`}>
                    <Table.Th scope="row">
                      <Group gap={6} wrap="nowrap">
                        {v.number}
                        {v.running && (
                          <Badge color="green" size="sm">
                            running
                          </Badge>
                        )}
                      </Group>
                    </Table.Th>
                    <Table.Td title={v.time}>
                      <Text size="sm">{formatDateTime(at)}</Text>
                      <Text size="xs" c="dimmed">
                        {relativeTime(at, now)}
                      </Text>
                    </Table.Td>
                    <Table.Td>{v.trigger}</Table.Td>
                    <Table.Td>{v.author ?? '—'}</Table.Td>
                    <Table.Td maw={320}>
                      <Text size="sm" lineClamp={3}>
                        {v.note ?? ''}
                      </Text>
                    </Table.Td>
                    <Table.Td className="mono" title={v.digest}>
                      {v.digest.replace(/^sha256:/, '').slice(0, 10)}
                    </Table.Td>
                    <Table.Td>
                      {!v.running && (
                        <Button
                          size="xs"
                          variant="light"
                          loading={busyVersion === v.number}
                          onClick={() => void rollback(v.number)}
                          aria-label={`Roll back to version ${v.number}`}
                        >
                          Roll back…
                        </Button>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>

        <Paper withBorder p="md" radius="md" component="section" aria-labelledby="diff-title">
          <Title order={2} size="h4" id="diff-title" mb="sm">
            Compare two versions
          </Title>
          <Group align="end" gap="sm" mb="md">
            <Select label="From version" data={options} value={from} onChange={setFrom} w={220} allowDeselect={false} />
            <Select label="To version" data={options} value={to} onChange={setTo} w={220} allowDeselect={false} />
            <Button onClick={() => void showDiff()} loading={diffBusy} disabled={from === null || to === null}>
              Show diff
            </Button>
          </Group>
          {diffError !== null && (
            <Alert color="red" role="alert">
              {diffError}
            </Alert>
          )}
          {diff !== null && (
            <Tabs defaultValue="changes">
              <Tabs.List mb="sm">
                <Tabs.Tab value="changes">Changes</Tabs.Tab>
                <Tabs.Tab value="text">Text</Tabs.Tab>
              </Tabs.List>
              <Tabs.Panel value="changes">
                <Text size="sm" c="dimmed" mb="xs">
                  From version {diff.from} to version {diff.to}
                </Text>
                <PlanDisplay plan={diff.plan} />
              </Tabs.Panel>
              <Tabs.Panel value="text">
                <TextDiff before={diff.before} after={diff.after} label={`Text diff from version ${diff.from} to ${diff.to}`} />
              </Tabs.Panel>
            </Tabs>
          )}
        </Paper>
      </Stack>
      <PlanModal
        pending={pending}
        onClose={() => {
          setPending(null);
        }}
      />
    </>
  );
}
