import { Text } from '@mantine/core';
import { diffLines, hunks } from '../lib/textdiff';

/** A unified diff of two texts, with a few lines of context. */
export function TextDiff({ before, after, label }: { before: string; after: string; label: string }) {
  const hs = hunks(diffLines(before, after), 3);
  if (hs.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        The texts are the same.
      </Text>
    );
  }
  return (
    <div className="diff" role="region" aria-label={label} tabIndex={0}>
      {hs.map((h) => (
        <div key={h.header}>
          <div className="hunk">{h.header}</div>
          {h.lines.map((l, i) => (
            <div key={i} className={l.op === 'same' ? undefined : l.op}>
              <span aria-hidden="true">{l.op === 'add' ? '+' : l.op === 'del' ? '-' : ' '}</span>
              <span className="visually-hidden">{l.op === 'add' ? 'added: ' : l.op === 'del' ? 'removed: ' : ''}</span>
              {l.text}
            </div>
          ))}
        </div>
      ))}
    </div>
  );
}
