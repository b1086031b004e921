import { Table, Text, UnstyledButton } from '@mantine/core';
import type { SeriesStats } from '../api/client';
import { formatMs, formatRate, formatRatio, type Group, type Window } from '../lib/stats';
import { ColumnHeads, numeric } from './ColumnHeads';

interface Props {
  group: Group;
  caption: string;
  series: readonly SeriesStats[];
  window: Window;
  focus: string | null;
  onFocus: (name: string) => void;
}

/** The live numbers of every location or upstream, one row each. */
export function StatsTable({ group, caption, series, window, focus, onFocus }: Props) {
  const noun = group === 'locations' ? 'location' : 'upstream';
  return (
    <Table.ScrollContainer minWidth={460}>
      <Table striped highlightOnHover captionSide="top" aria-label={caption}>
        <Table.Caption>{caption}</Table.Caption>
        <ColumnHeads
          columns={[
            'Name',
            { key: 'req/s', label: <abbr title="Requests per second">Req/s</abbr>, numeric: true },
            numeric('p50'),
            numeric('p95'),
            numeric('p99'),
            numeric('4xx'),
            numeric('5xx'),
          ]}
        />
        <Table.Tbody>
          {series.length === 0 && (
            <Table.Tr>
              <Table.Td colSpan={7}>
                <Text c="dimmed" size="sm">
                  No {group} yet.
                </Text>
              </Table.Td>
            </Table.Tr>
          )}
          {series.map((s) => {
            const w = s[window];
            const id = `${group}-${s.name}`;
            return (
              <Table.Tr key={s.name} data-testid={`stats-${id}`} aria-selected={focus === s.name}>
                <Table.Th scope="row" fw={focus === s.name ? 700 : 500}>
                  <UnstyledButton
                    onClick={() => {
                      onFocus(s.name);
                    }}
                    aria-label={`Chart ${noun} ${s.name}`}
                    aria-pressed={focus === s.name}
                  >
                    {s.name}
                  </UnstyledButton>
                </Table.Th>
                <Table.Td ta="right" data-testid={`rps-${id}`}>
                  {formatRate(w.requests_per_second)}
                </Table.Td>
                <Table.Td ta="right">{formatMs(w.p50_ms)}</Table.Td>
                <Table.Td ta="right">{formatMs(w.p95_ms)}</Table.Td>
                <Table.Td ta="right">{formatMs(w.p99_ms)}</Table.Td>
                <Table.Td ta="right" c={w.ratio_4xx > 0 ? 'var(--mantine-color-orange-light-color)' : undefined}>
                  {formatRatio(w.ratio_4xx)}
                </Table.Td>
                <Table.Td ta="right" c={w.ratio_5xx > 0 ? 'var(--mantine-color-red-light-color)' : undefined}>
                  {formatRatio(w.ratio_5xx)}
                </Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
