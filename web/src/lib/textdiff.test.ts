import { describe, expect, it } from 'vitest';
import { diffLines, hunks, joinDocuments, splitLines } from './textdiff';

const render = (text: string) =>
  diffLines(...(text.split('|') as [string, string]))
    .map((l) => (l.op === 'same' ? ' ' : l.op === 'add' ? '+' : '-') + l.text)
    .join(',');

describe('diffLines', () => {
  it('finds nothing in equal texts', () => {
    expect(diffLines('a\nb\n', 'a\nb\n').every((l) => l.op === 'same')).toBe(true);
    expect(diffLines('', '')).toEqual([]);
  });
  it('shows a changed line as removed then added', () => {
    expect(render('[l]\nup = "blue"\nx\n|[l]\nup = "green"\nx\n')).toBe(' [l],-up = "blue",+up = "green", x');
  });
  it('handles pure additions and removals', () => {
    expect(render('a\n|a\nb\n')).toBe(' a,+b');
    expect(render('a\nb\n|b\n')).toBe('-a, b');
    expect(render('|x\n')).toBe('+x');
  });
  it('numbers the lines of both sides', () => {
    const d = diffLines('a\nb\nc\n', 'a\nc\nd\n');
    expect(d).toEqual([
      { op: 'same', text: 'a', a: 1, b: 1 },
      { op: 'del', text: 'b', a: 2 },
      { op: 'same', text: 'c', a: 3, b: 2 },
      { op: 'add', text: 'd', b: 3 },
    ]);
  });
  it('keeps the common middle of a reordering', () => {
    expect(render('x\na\nb\ny\n|y\na\nb\nx\n')).toMatch(/ a, b/);
  });
});

describe('hunks', () => {
  it('groups changes with context', () => {
    const a = Array.from({ length: 20 }, (_, i) => `l${i + 1}`);
    const b = [...a];
    b[1] = 'changed2';
    b[17] = 'changed18';
    const hs = hunks(diffLines(a.join('\n'), b.join('\n')), 2);
    expect(hs.map((h) => h.header)).toEqual(['@@ -1,4 +1,4 @@', '@@ -16,5 +16,5 @@']);
    expect(hs[0]?.lines.filter((l) => l.op !== 'same').map((l) => l.text)).toEqual(['l2', 'changed2']);
  });
  it('merges close changes and is empty without any', () => {
    const hs = hunks(diffLines('a\nb\nc\nd\n', 'A\nb\nc\nD\n'), 1);
    expect(hs.length).toBe(1);
    expect(hunks(diffLines('a\n', 'a\n'))).toEqual([]);
  });
  it('places a hunk of pure additions after the line before', () => {
    const hs = hunks(diffLines('a\nb\n', 'a\nb\nc\n'), 0);
    expect(hs[0]?.header).toBe('@@ -2,0 +3,1 @@');
  });
});

describe('documents', () => {
  it('splits and joins', () => {
    expect(splitLines('a\nb')).toEqual(['a', 'b']);
    expect(splitLines('a\n')).toEqual(['a']);
    expect(joinDocuments([{ name: 'x.toml', text: 'a = 1\n' }])).toBe('a = 1\n');
    expect(joinDocuments([{ name: 'a.toml', text: 'a = 1' }, { name: 'b.toml', text: 'b = 2\n' }])).toBe(
      '# a.toml\na = 1\n# b.toml\nb = 2\n',
    );
  });
});
