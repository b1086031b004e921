/** "12 s ago", "3 min ago", "2 h ago", "5 d ago" (or "in …" for the future). */
export function relativeTime(thenMs: number, nowMs: number): string {
  const s = Math.round((nowMs - thenMs) / 1000);
  const abs = Math.abs(s);
  let text: string;
  if (abs < 5) return 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86_400) text = `${Math.floor(abs / 3600)} h`;
  else text = `${Math.floor(abs / 86_400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

export function formatDateTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}
