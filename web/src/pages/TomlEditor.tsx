import { useRef, useState } from 'react';
import { Alert, Button, Group, Loader, Stack, Text, Textarea } from '@mantine/core';
import { api, ApiError, errorText, get, isPlan, unwrap, type FieldError } from '../api/client';
import { lineRange } from '../lib/lines';
import { notifyApplied } from '../lib/notify';
import { useLoad } from '../lib/useLoad';
import { ErrorList } from '../components/ErrorList';
import { PlanModal, type PendingChange } from '../components/PlanModal';

const toml = {
  bodySerializer: (body: string) => body,
};

/** The whole configuration as TOML, for power users: checked, planned, then applied. */
export function TomlEditor() {
  const [version, setVersion] = useState(0);
  const loaded = useLoad(async (signal) => {
    const { data, response } = await unwrap(api.GET('/api/config', { headers: { Accept: 'application/toml' }, parseAs: 'text', signal }));
    return { text: data, etag: response.headers.get('ETag') };
  }, `toml:${version}`);
  // What the editor holds: the loaded text until edited.
  const [edited, setEdited] = useState<string | null>(null);
  const text = edited ?? loaded.data?.text ?? null;
  const setText = setEdited;
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [pending, setPending] = useState<PendingChange | null>(null);
  const [busy, setBusy] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);

  const goToLine = (line: number) => {
    const el = area.current;
    if (el === null) return;
    const [start, end] = lineRange(el.value, line);
    el.focus();
    el.setSelectionRange(start, end);
    // put the line in view: the textarea grows with its text, so the page scrolls
    const lineHeight = Number.parseFloat(getComputedStyle(el).lineHeight) || 20;
    const top = el.getBoundingClientRect().top + window.scrollY + (line - 1) * lineHeight;
    window.scrollTo({ top: Math.max(0, top - window.innerHeight / 3) });
  };

  const put = (body: string, dryRun: boolean) =>
    api.PUT('/api/config', {
      params: { query: dryRun ? { dry_run: true } : {} },
      body,
      ...toml,
      headers: {
        'Content-Type': 'application/toml',
        ...(loaded.data?.etag ? { 'If-Match': loaded.data.etag } : {}),
      },
    });

  const fail = (e: unknown) => {
    if (e instanceof ApiError && e.status === 412) {
      setErrors([{ key: '', message: 'The configuration changed since it was loaded: reload it and make the change again.' }]);
    } else if (e instanceof ApiError && e.errors.length > 0) setErrors(e.errors);
    else setErrors([{ key: '', message: errorText(e) }]);
  };

  const review = async () => {
    if (text === null) return;
    setErrors([]);
    setBusy(true);
    const body = text;
    try {
      const answer = await get(put(body, true));
      if (!isPlan(answer)) throw new Error('the API applied a dry run');
      setPending({
        title: 'Apply the configuration',
        plan: answer,
        confirmLabel: 'Apply',
        apply: async () => {
          try {
            const result = await get(put(body, false));
            if (isPlan(result)) throw new Error('the API answered a plan');
            notifyApplied('Configuration', result);
            setEdited(null);
            setVersion((v) => v + 1);
          } catch (e) {
            fail(e);
            throw e;
          }
        },
      });
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  };

  if (loaded.error !== null && loaded.data === undefined) {
    return (
      <Alert color="red" role="alert">
        {loaded.error}
      </Alert>
    );
  }
  if (text === null) return <Loader aria-label="Loading the configuration" />;
  const dirty = text !== loaded.data?.text;
  return (
    <Stack gap="sm">
      <Text size="sm" c="dimmed">
        The whole configuration as written (secrets show as "***", and "***" keeps the running value). Saving checks it as a start
        would, shows the plan, and applies it only when you confirm.
      </Text>
      <ErrorList title="The configuration is not valid" errors={errors} id="toml-errors" onLine={goToLine} />
      <Textarea
        label="Configuration (TOML)"
        value={text}
        onChange={(e) => {
          setText(e.currentTarget.value);
        }}
        autosize
        minRows={12}
        maxRows={40}
        spellCheck={false}
        classNames={{ input: 'mono' }}
        ref={area}
        aria-invalid={errors.length > 0}
        aria-describedby={errors.length > 0 ? 'toml-errors' : undefined}
      />
      <Group>
        <Button onClick={() => void review()} loading={busy} disabled={!dirty}>
          Review and apply
        </Button>
        <Button
          variant="default"
          onClick={() => {
            setErrors([]);
            setEdited(null);
          }}
          disabled={!dirty}
        >
          Discard changes
        </Button>
        <Button
          variant="subtle"
          onClick={() => {
            setErrors([]);
            setEdited(null);
            setVersion((v) => v + 1);
          }}
        >
          Reload
        </Button>
      </Group>
      <PlanModal
        pending={pending}
        onClose={() => {
          setPending(null);
        }}
      />
    </Stack>
  );
}
