// A line diff of two configuration texts (the documents of two versions), shown as hunks with
// a few lines of context, like `diff -u`.

export type Op = 'same' | 'add' | 'del';

export interface DiffLine {
  op: Op;
  text: string;
  /** Line number in the old text (same, del). */
  a?: number;
  /** Line number in the new text (same, add). */
  b?: number;
}

export function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/**
 * The shortest edit between two lists of lines (an LCS over the part between the common
 * prefix and suffix; configurations are a few thousand lines at most).
 */
export function diffLines(oldText: string, newText: string): DiffLine[] {
  const a = splitLines(oldText);
  const b = splitLines(newText);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const n = endA - start;
  const m = endB - start;
  // lcs[i][j]: the LCS length of a[start+i..endA] and b[start+j..endB]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    const row = lcs[i] as Uint32Array;
    const below = lcs[i + 1] as Uint32Array;
    for (let j = m - 1; j >= 0; j--) {
      row[j] = a[start + i] === b[start + j] ? (below[j + 1] ?? 0) + 1 : Math.max(below[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const out: DiffLine[] = [];
  for (let k = 0; k < start; k++) out.push({ op: 'same', text: a[k] ?? '', a: k + 1, b: k + 1 });
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    const ai = a[start + i];
    const bj = b[start + j];
    if (i < n && j < m && ai === bj) {
      out.push({ op: 'same', text: ai ?? '', a: start + i + 1, b: start + j + 1 });
      i++;
      j++;
    } else if (j < m && (i === n || (lcs[i]?.[j + 1] ?? 0) > (lcs[i + 1]?.[j] ?? 0))) {
      out.push({ op: 'add', text: bj ?? '', b: start + j + 1 });
      j++;
    } else {
      out.push({ op: 'del', text: ai ?? '', a: start + i + 1 });
      i++;
    }
  }
  for (let k = 0; k < a.length - endA; k++) {
    out.push({ op: 'same', text: a[endA + k] ?? '', a: endA + k + 1, b: endB + k + 1 });
  }
  return out;
}

export interface Hunk {
  /** `@@ -a,n +b,m @@` */
  header: string;
  lines: DiffLine[];
}

/** The changed lines with `context` lines around them, grouped as `diff -u` does. */
export function hunks(lines: readonly DiffLine[], context = 3): Hunk[] {
  const changed = lines.map((l, i) => (l.op === 'same' ? -1 : i)).filter((i) => i >= 0);
  if (changed.length === 0) return [];
  const ranges: [number, number][] = [];
  for (const i of changed) {
    const from = Math.max(0, i - context);
    const to = Math.min(lines.length - 1, i + context);
    const last = ranges.at(-1);
    if (last !== undefined && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else ranges.push([from, to]);
  }
  return ranges.map(([from, to]) => {
    const slice = lines.slice(from, to + 1);
    const aLines = slice.filter((l) => l.op !== 'add');
    const bLines = slice.filter((l) => l.op !== 'del');
    const aStart = aLines[0]?.a ?? firstBefore(lines, from, 'a');
    const bStart = bLines[0]?.b ?? firstBefore(lines, from, 'b');
    return { header: `@@ -${aStart},${aLines.length} +${bStart},${bLines.length} @@`, lines: slice };
  });
}

function firstBefore(lines: readonly DiffLine[], index: number, side: 'a' | 'b'): number {
  for (let i = index - 1; i >= 0; i--) {
    const n = lines[i]?.[side];
    if (n !== undefined) return n;
  }
  return 0;
}

/** Several documents (name, text) as one text, each under a `# name` line when there are many. */
export function joinDocuments(docs: readonly { name: string; text: string }[]): string {
  if (docs.length === 1) return docs[0]?.text ?? '';
  return docs.map((d) => `# ${d.name}\n${d.text.endsWith('\n') ? d.text : `${d.text}\n`}`).join('');
}
