import { useEffect, useRef, useState } from 'react';
import { Badge, Button, Group, NumberInput, SegmentedControl, Select, Table, Text } from '@mantine/core';
import { api, get, type Dropped, type LogRecord } from '../api/client';
import { matches, NO_FILTER, prepend, STATUS_CLASSES, statusColor, streamUrl, type Line, type LogFilter } from '../lib/logs';
import { formatMs } from '../lib/stats';
import { useEventSource } from '../lib/useEventSource';
import { useLoad } from '../lib/useLoad';
import { PageTitle } from '../components/PageTitle';
import { ColumnHeads, numeric } from '../components/ColumnHeads';

const MAX_LINES = 500;
const FLUSH_MS = 250;

function timeOf(iso: string): string {
  const t = iso.indexOf('T');
  return t < 0 ? iso : iso.slice(t + 1, t + 13);
}

export function Logs() {
  const [filter, setFilter] = useState<LogFilter>(NO_FILTER);
  const [paused, setPaused] = useState(false);
  const [lines, setLines] = useState<Line[]>([]);
  const [held, setHeld] = useState<Line[]>([]);
  const [dropped, setDropped] = useState(0);
  const queue = useRef<Line[]>([]);
  const nextId = useRef(0);
  const pausedRef = useRef(paused);
  useEffect(() => {
    pausedRef.current = paused;
  }, [paused]);

  const locations = useLoad(
    (signal) => get(api.GET('/api/config/{kind}', { params: { path: { kind: 'locations' } }, signal })).then((items) => items.map((i) => i.name)),
    'locations',
  );

  const state = useEventSource(streamUrl(filter), {
    log: (data) => {
      queue.current.push({ id: nextId.current++, record: JSON.parse(data) as LogRecord });
    },
    dropped: (data) => {
      const d = JSON.parse(data) as Dropped;
      setDropped((n) => n + d.dropped);
    },
  });

  // Records arrive by the hundred a second on a busy proxy: render them in batches.
  useEffect(() => {
    const timer = setInterval(() => {
      if (queue.current.length === 0) return;
      const batch = queue.current;
      queue.current = [];
      if (pausedRef.current) setHeld((h) => [...h, ...batch].slice(-MAX_LINES));
      else setLines((l) => prepend(l, batch, MAX_LINES));
    }, FLUSH_MS);
    return () => {
      clearInterval(timer);
    };
  }, []);

  const changeFilter = (next: LogFilter) => {
    setFilter(next);
    // the stream is opened again with the new filter; the lines kept are filtered here
    setLines((l) => l.filter((line) => matches(line.record, next)));
    setHeld((h) => h.filter((line) => matches(line.record, next)));
  };

  const resume = () => {
    setLines((l) => prepend(l, held, MAX_LINES));
    setHeld([]);
    setPaused(false);
  };

  return (
    <>
      <PageTitle title="Logs">
        <Badge variant="dot" color={paused ? 'yellow' : state === 'open' ? 'green' : state === 'retrying' ? 'red' : 'gray'} data-testid="tail-state">
          {paused ? 'paused' : state === 'open' ? 'live' : state === 'retrying' ? 'reconnecting' : 'waiting for requests'}
        </Badge>
      </PageTitle>
      <Group align="end" gap="sm" mb="md" wrap="wrap">
        <div>
          <Text size="sm" fw={500} mb={4} id="status-filter-label">
            Status
          </Text>
          <SegmentedControl
            aria-labelledby="status-filter-label"
            value={filter.status ?? 'all'}
            onChange={(v) => {
              changeFilter({ ...filter, status: STATUS_CLASSES.find((c) => c === v) ?? null });
            }}
            data={[{ value: 'all', label: 'All' }, ...STATUS_CLASSES.map((c) => ({ value: c, label: c }))]}
          />
        </div>
        <Select
          label="Location"
          placeholder="All locations"
          data={locations.data ?? []}
          value={filter.location}
          onChange={(v) => {
            changeFilter({ ...filter, location: v });
          }}
          clearable
          w={200}
        />
        <NumberInput
          label="Slower than (ms)"
          placeholder="Any"
          min={0}
          value={filter.slowMs ?? ''}
          onChange={(v) => {
            const n = typeof v === 'number' ? v : Number.parseFloat(v);
            changeFilter({ ...filter, slowMs: Number.isFinite(n) && n > 0 ? n : null });
          }}
          w={160}
        />
        {paused ? (
          <Button onClick={resume} color="yellow">
            Resume{held.length > 0 ? ` (${held.length} new)` : ''}
          </Button>
        ) : (
          <Button
            variant="default"
            onClick={() => {
              setPaused(true);
            }}
          >
            Pause
          </Button>
        )}
        <Button
          variant="subtle"
          onClick={() => {
            setLines([]);
            setHeld([]);
            setDropped(0);
          }}
        >
          Clear
        </Button>
      </Group>
      <Text size="sm" c="dimmed" mb="xs" data-testid="tail-count">
        {lines.length} line{lines.length === 1 ? '' : 's'} shown, newest first (at most {MAX_LINES})
        {paused && held.length > 0 ? ` · ${held.length} held while paused` : ''}
        {dropped > 0 ? ` · ${dropped} missed (the stream fell behind)` : ''}
      </Text>
      <Table.ScrollContainer minWidth={900}>
        <Table striped className="log-table" verticalSpacing={4} fz="sm" aria-label="Access log, newest first">
          <ColumnHeads
            columns={[
              'Time (UTC)',
              'Status',
              'Request',
              'Location',
              'Upstream',
              numeric('Latency'),
              numeric('Bytes'),
              'Client',
            ]}
          />
          <Table.Tbody>
            {lines.length === 0 && (
              <Table.Tr>
                <Table.Td colSpan={8}>
                  <Text c="dimmed" size="sm">
                    Waiting for requests that match…
                  </Text>
                </Table.Td>
              </Table.Tr>
            )}
            {lines.map(({ id, record: r }) => (
              <Table.Tr key={id} data-testid="log-line" data-status={r.status} data-location={r.location ?? ''}>
                <Table.Td className="mono">{timeOf(r.time)}</Table.Td>
                <Table.Td>
                  <Badge color={statusColor(r.status)} variant="light">
                    {r.status === 0 ? '—' : r.status}
                  </Badge>
                </Table.Td>
                <Table.Td className="mono" title={`${r.method} ${r.host ?? ''}${r.path}`}>
                  {r.method} {r.host ?? ''}
                  {r.path}
                </Table.Td>
                <Table.Td>{r.location ?? '—'}</Table.Td>
                <Table.Td>
                  {r.upstream ?? '—'}
                  {r.backend != null && (
                    <Text span size="xs" c="dimmed">
                      {' '}
                      {r.backend}
                    </Text>
                  )}
                </Table.Td>
                <Table.Td ta="right">{formatMs(r.latency_ms)}</Table.Td>
                <Table.Td ta="right">{r.bytes_sent}</Table.Td>
                <Table.Td className="mono">{r.client ?? '—'}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
    </>
  );
}
