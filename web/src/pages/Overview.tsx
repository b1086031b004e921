import { useMemo, useState } from 'react';
import { Badge, Group, Paper, SegmentedControl, Select, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { useStatsFrames } from '../lib/liveStats';
import {
  chartData,
  formatMs,
  formatRate,
  formatRatio,
  KEEP_SECONDS,
  seriesNames,
  totalRequests,
  type Group as SeriesGroup,
  type Metric,
  type Window,
} from '../lib/stats';
import { PageTitle } from '../components/PageTitle';
import { StatsTable } from '../components/StatsTable';
import { PALETTE, TimeChart } from '../components/TimeChart';

interface Focus {
  group: SeriesGroup;
  name: string;
}

const LATENCY: { metric: Metric; label: string; color: string }[] = [
  { metric: 'p50_ms', label: 'p50', color: '#2f9e44' },
  { metric: 'p95_ms', label: 'p95', color: '#f08c00' },
  { metric: 'p99_ms', label: 'p99', color: '#e03131' },
];
const ERRORS: { metric: Metric; label: string; color: string }[] = [
  { metric: 'ratio_4xx', label: '4xx', color: '#f08c00' },
  { metric: 'ratio_5xx', label: '5xx', color: '#e03131' },
];

export function Overview() {
  const frames = useStatsFrames();
  const [window, setWindow] = useState<Window>('last_second');
  const [chosen, setChosen] = useState<Focus | null>(null);
  const latest = frames.at(-1);
  const locations = useMemo(() => seriesNames(frames, 'locations'), [frames]);
  const upstreams = useMemo(() => seriesNames(frames, 'upstreams'), [frames]);

  // The series the latency and error charts show: the one chosen, else the first location.
  const focus = useMemo<Focus | null>(() => {
    if (chosen !== null) return chosen;
    if (locations[0] !== undefined) return { group: 'locations', name: locations[0] };
    if (upstreams[0] !== undefined) return { group: 'upstreams', name: upstreams[0] };
    return null;
  }, [chosen, locations, upstreams]);

  const rpsLocations = useMemo(
    () => chartData(frames, 'locations', locations.map((name) => ({ name, metric: 'requests_per_second' as const }))),
    [frames, locations],
  );
  const rpsUpstreams = useMemo(
    () => chartData(frames, 'upstreams', upstreams.map((name) => ({ name, metric: 'requests_per_second' as const }))),
    [frames, upstreams],
  );
  const latency = useMemo(
    () => (focus === null ? null : chartData(frames, focus.group, LATENCY.map((l) => ({ name: focus.name, metric: l.metric })))),
    [frames, focus],
  );
  const errors = useMemo(
    () => (focus === null ? null : chartData(frames, focus.group, ERRORS.map((l) => ({ name: focus.name, metric: l.metric })))),
    [frames, focus],
  );

  const kept = frames.length === 0 ? 0 : (latest?.time ?? 0) - (frames[0]?.time ?? 0) + 1;
  const total = totalRequests(latest, 'locations', window);
  const windowSeconds = window === 'last_second' ? 1 : 60;
  const focusValue = focus === null ? null : `${focus.group}:${focus.name}`;
  const focusLabel = focus === null ? '' : `${focus.group === 'locations' ? 'location' : 'upstream'} ${focus.name}`;
  const focusStats = focus === null ? undefined : latest?.[focus.group].find((s) => s.name === focus.name)?.[window];

  return (
    <>
      <PageTitle title="Overview">
        <Group gap="sm">
          <Badge color={latest === undefined ? 'gray' : 'green'} variant="dot" data-testid="stream-state">
            {latest === undefined ? 'waiting for data' : `live · ${new Date(latest.time * 1000).toLocaleTimeString()}`}
          </Badge>
          <SegmentedControl
            aria-label="Statistics window"
            value={window}
            onChange={(v) => {
              setWindow(v === 'last_minute' ? 'last_minute' : 'last_second');
            }}
            data={[
              { value: 'last_second', label: 'Last second' },
              { value: 'last_minute', label: 'Last minute' },
            ]}
          />
        </Group>
      </PageTitle>
      <Stack gap="lg">
        <SimpleGrid cols={{ base: 2, md: 4 }} spacing="sm">
          <Paper withBorder p="sm" radius="md">
            <Text size="xs" c="dimmed">Requests/s (all locations)</Text>
            <Text fw={700} size="xl" data-testid="total-rps">
              {formatRate(total / windowSeconds)}
            </Text>
          </Paper>
          <Paper withBorder p="sm" radius="md">
            <Text size="xs" c="dimmed">Requests in the {window === 'last_second' ? 'last second' : 'last minute'}</Text>
            <Text fw={700} size="xl" data-testid="total-requests">
              {total.toLocaleString('en-US')}
            </Text>
          </Paper>
          <Paper withBorder p="sm" radius="md">
            <Text size="xs" c="dimmed">p95 of {focusLabel || '—'}</Text>
            <Text fw={700} size="xl">{formatMs(focusStats?.p95_ms)}</Text>
          </Paper>
          <Paper withBorder p="sm" radius="md">
            <Text size="xs" c="dimmed">History kept</Text>
            <Text fw={700} size="xl">
              {Math.floor(kept / 60)}:{String(kept % 60).padStart(2, '0')} / {KEEP_SECONDS / 60}:00
            </Text>
          </Paper>
        </SimpleGrid>

        <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="md">
          <StatsTable
            group="locations"
            caption="Locations"
            series={latest?.locations ?? []}
            window={window}
            focus={focus?.group === 'locations' ? focus.name : null}
            onFocus={(name) => {
              setChosen({ group: 'locations', name });
            }}
          />
          <StatsTable
            group="upstreams"
            caption="Upstreams"
            series={latest?.upstreams ?? []}
            window={window}
            focus={focus?.group === 'upstreams' ? focus.name : null}
            onFocus={(name) => {
              setChosen({ group: 'upstreams', name });
            }}
          />
        </SimpleGrid>

        <Group justify="space-between" align="end">
          <Title order={2} size="h4">
            Last 15 minutes
          </Title>
          <Select
            label="Latency and errors of"
            w={260}
            allowDeselect={false}
            value={focusValue}
            onChange={(v) => {
              if (v === null) return;
              const [group, ...rest] = v.split(':');
              setChosen({ group: group as SeriesGroup, name: rest.join(':') });
            }}
            data={[
              { group: 'Locations', items: locations.map((n) => ({ value: `locations:${n}`, label: `location ${n}` })) },
              { group: 'Upstreams', items: upstreams.map((n) => ({ value: `upstreams:${n}`, label: `upstream ${n}` })) },
            ]}
          />
        </Group>
        <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="md">
          <TimeChart
            title="Requests/s per location"
            description={`Requests per second of each location over the last ${Math.ceil(kept / 60)} minutes`}
            data={rpsLocations}
            lines={locations.map((n, i) => ({ label: n, color: PALETTE[i % PALETTE.length] ?? '#888' }))}
            format={formatRate}
          />
          <TimeChart
            title="Requests/s per upstream"
            description={`Requests per second of each upstream over the last ${Math.ceil(kept / 60)} minutes`}
            data={rpsUpstreams}
            lines={upstreams.map((n, i) => ({ label: n, color: PALETTE[(i + 3) % PALETTE.length] ?? '#888' }))}
            format={formatRate}
          />
          {latency !== null && (
            <TimeChart
              title={`Latency of ${focusLabel}`}
              description={`p50, p95 and p99 latency of ${focusLabel}, per second`}
              data={latency}
              lines={LATENCY}
              format={formatMs}
            />
          )}
          {errors !== null && (
            <TimeChart
              title={`Error ratios of ${focusLabel}`}
              description={`Share of 4xx and 5xx answers of ${focusLabel}, per second`}
              data={errors}
              lines={ERRORS}
              format={formatRatio}
            />
          )}
        </SimpleGrid>
      </Stack>
    </>
  );
}
