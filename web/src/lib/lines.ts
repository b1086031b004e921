// The raw TOML editor points at the lines the API's errors name (`pingap.toml:12: …`).

/** The line number an error message starts with (`FILE:LINE:` or `FILE:LINE:COLUMN:`), if any. */
export function lineOf(message: string): number | null {
  const m = /^[^\s]*?:(\d+)(?::\d+)?:/.exec(message);
  if (m?.[1] === undefined) return null;
  const n = Number.parseInt(m[1], 10);
  return n > 0 ? n : null;
}

/** The character range [start, end) of line `line` (1-based) of `text`, clamped to the text. */
export function lineRange(text: string, line: number): [number, number] {
  let start = 0;
  for (let i = 1; i < line; i++) {
    const next = text.indexOf('\n', start);
    if (next < 0) return [text.length, text.length];
    start = next + 1;
  }
  const end = text.indexOf('\n', start);
  return [start, end < 0 ? text.length : end];
}
