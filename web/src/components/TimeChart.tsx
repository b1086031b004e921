import { useEffect, useRef } from 'react';
import { Group, Paper, Text, useComputedColorScheme } from '@mantine/core';
import uPlot from 'uplot';
import type { AlignedData } from '../lib/stats';

export interface Line {
  label: string;
  color: string;
}

interface Props {
  title: string;
  /** What the chart shows, for screen readers (the canvas says nothing). */
  description: string;
  data: AlignedData;
  lines: readonly Line[];
  format: (v: number) => string;
  height?: number;
}

export const PALETTE = ['#4263eb', '#e8590c', '#2f9e44', '#ae3ec9', '#1098ad', '#f08c00', '#d6336c', '#5c940d'];

/**
 * A time chart of the last minutes, one point a second: uPlot draws on a canvas and takes new
 * data with setData (no re-creation), so a point a second costs little. Its own legend is off;
 * the legend below gives each line's last value in text.
 */
export function TimeChart({ title, description, data, lines, format, height = 180 }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const scheme = useComputedColorScheme('light');
  const dataRef = useRef(data);
  const formatRef = useRef(format);
  useEffect(() => {
    dataRef.current = data;
    formatRef.current = format;
  });
  const lineKey = lines.map((l) => `${l.label}:${l.color}`).join('|');

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const axis = scheme === 'dark' ? '#c9c9c9' : '#495057';
    const grid = scheme === 'dark' ? 'rgba(255,255,255,0.08)' : 'rgba(0,0,0,0.07)';
    const axisStyle: uPlot.Axis = {
      stroke: axis,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: '11px system-ui, sans-serif',
    };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      // at least a minute wide, so the first seconds do not stretch over the whole chart
      scales: { x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] }, y: { range: (_u, min, max) => [0, Math.max(max, min, 1e-9) * 1.1] } },
      axes: [
        {
          ...axisStyle,
          space: 70,
          values: (_u, splits) =>
            splits.map((s) => new Date(s * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })),
        },
        { ...axisStyle, size: 64, values: (_u, splits) => splits.map((v) => formatRef.current(v)) },
      ],
      series: [
        {},
        ...lines.map((l) => ({ label: l.label, stroke: l.color, width: 1.5, spanGaps: false, points: { show: false } })),
      ],
    };
    const u = new uPlot(opts, dataRef.current, el);
    plot.current = u;
    const canvas = el.querySelector('canvas');
    canvas?.setAttribute('aria-hidden', 'true');
    const resize = new ResizeObserver(() => {
      u.setSize({ width: Math.max(200, el.clientWidth), height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // lineKey stands for `lines`
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [lineKey, height, scheme]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return (
    <Paper withBorder p="sm" radius="md">
      <Text fw={600} size="sm" mb={4}>
        {title}
      </Text>
      <div className="chart" ref={box} role="img" aria-label={description} />
      <Group gap="md" mt={4} wrap="wrap">
        {lines.map((l, i) => {
          const ys = data[i + 1] ?? [];
          let last: number | null = null;
          for (let k = ys.length - 1; k >= 0; k--) {
            const v = ys[k];
            if (v !== null && v !== undefined) {
              last = v;
              break;
            }
          }
          return (
            <Text size="xs" key={l.label}>
              <span className="swatch" style={{ background: l.color }} aria-hidden="true" />
              {l.label}: {last === null ? '—' : format(last)}
            </Text>
          );
        })}
      </Group>
    </Paper>
  );
}
