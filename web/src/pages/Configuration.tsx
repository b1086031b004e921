import { useMemo, useState } from 'react';
import { Alert, Button, Collapse, Group, Loader, NavLink, Paper, SimpleGrid, Stack, Tabs, Text, TextInput, Textarea, Title } from '@mantine/core';
import { useForm } from '@mantine/form';
import { Link, useLocation, useParams } from 'wouter';
import {
  api,
  ApiError,
  errorText,
  get,
  isPlan,
  KINDS,

  type EntityItem,
  type FieldError,
  type Kind,
  type PlanView,
  type WriteAnswer,
  type WriteResult,
} from '../api/client';
import { FIELDS, fieldKeys, FormProblem, fromForm, OTHER, summary, toForm, type Entity, type FormValues } from '../lib/entities';
import { splitFieldErrors } from '../lib/fieldErrors';
import { notifyApplied } from '../lib/notify';
import { useLoad } from '../lib/useLoad';
import { PageTitle } from '../components/PageTitle';
import { EntityField } from '../components/EntityFields';
import { ErrorList } from '../components/ErrorList';
import { PlanModal, type PendingChange } from '../components/PlanModal';
import { TomlEditor } from './TomlEditor';

const LABEL: Record<Kind, string> = {
  servers: 'Servers',
  locations: 'Locations',
  upstreams: 'Upstreams',
  plugins: 'Plugins',
  certificates: 'Certificates',
};
const SINGULAR: Record<Kind, string> = {
  servers: 'server',
  locations: 'location',
  upstreams: 'upstream',
  plugins: 'plugin',
  certificates: 'certificate',
};
const NAME_RE = /^[A-Za-z0-9_.-]+$/;

function isKind(v: string | undefined): v is Kind {
  return v !== undefined && (KINDS as readonly string[]).includes(v);
}

function asPlan(answer: WriteAnswer): PlanView {
  if (!isPlan(answer)) throw new Error('the API applied a dry run');
  return answer;
}
function asResult(answer: WriteAnswer): WriteResult {
  if (isPlan(answer)) throw new Error('the API answered a plan');
  return answer;
}

/** The API's errors, whatever the status: the per-key ones of a 422, else the message. */
function errorsOf(e: unknown): FieldError[] {
  if (e instanceof ApiError) {
    if (e.status === 412) {
      return [{ key: '', message: 'It was changed by someone else since this form was loaded: reload it and make the change again.' }];
    }
    if (e.errors.length > 0) return e.errors;
  }
  return [{ key: '', message: errorText(e) }];
}

interface FormProps {
  kind: Kind;
  name: string;
  item: EntityItem | null;
  refs: Record<Kind, string[]>;
  onChanged: (name: string | null) => void;
}

function EntityForm({ kind, name: initialName, item, refs, onChanged }: FormProps) {
  const creating = item === null;
  const original: Entity = item?.value ?? {};
  const form = useForm<FormValues>({ initialValues: toForm(kind, original) });
  const [newName, setNewName] = useState(initialName);
  const [nameError, setNameError] = useState<string | null>(null);
  const [otherErrors, setOtherErrors] = useState<FieldError[]>([]);
  const [pending, setPending] = useState<PendingChange | null>(null);
  const [busy, setBusy] = useState(false);
  const name = creating ? newName.trim() : initialName;
  const fields = FIELDS[kind];
  // "More settings" starts open when the entity uses any of them; an error there opens it.
  const [moreOpen, setMoreOpen] = useState(() => fields.some((f) => f.more === true && f.key in original) || form.values[OTHER] !== '');
  const moreFields = fields.filter((f) => f.more === true);
  // A plugin's own settings are the JSON box: shown first, not folded.
  const jsonFirst = kind === 'plugins';
  const json = (
    <Textarea
      label={jsonFirst ? 'Settings (JSON)' : 'Other settings (JSON)'}
      description={jsonFirst ? "The type's own keys, as a JSON object" : 'Keys without a field above, as a JSON object'}
      autosize
      minRows={2}
      maxRows={16}
      classNames={{ input: 'mono' }}
      spellCheck={false}
      {...form.getInputProps(OTHER)}
    />
  );
  /** Unfolds "More settings" when one of its fields has an error. */
  const revealErrors = (fieldsWithErrors: readonly string[]) => {
    const folded = new Set([...moreFields.map((f) => f.key), ...(jsonFirst ? [] : [OTHER])]);
    if (fieldsWithErrors.some((f) => folded.has(f))) setMoreOpen(true);
  };

  const showErrors = (e: unknown) => {
    const split = splitFieldErrors(errorsOf(e), kind, name, fieldKeys(kind), OTHER);
    for (const [field, messages] of Object.entries(split.byField)) form.setFieldError(field, messages.join(' · '));
    revealErrors(Object.keys(split.byField));
    setOtherErrors(split.other);
  };

  const clearErrors = () => {
    form.clearErrors();
    setOtherErrors([]);
    setNameError(null);
  };

  const params = (dryRun: boolean) => ({
    path: { kind, name },
    query: dryRun ? { dry_run: true } : {},
    header: creating ? { 'If-None-Match': '*' } : { 'If-Match': item.etag },
  });

  const review = async () => {
    clearErrors();
    if (creating && !NAME_RE.test(name)) {
      setNameError('Letters, digits, _, - and . only');
      return;
    }
    let entity: Entity;
    try {
      entity = fromForm(kind, form.values, original);
    } catch (e) {
      if (e instanceof FormProblem) {
        form.setFieldError(e.field, e.message);
        revealErrors([e.field]);
      }
      return;
    }
    setBusy(true);
    try {
      const plan = asPlan(await get(api.PUT('/api/{kind}/{name}', { params: params(true), body: entity })));
      setPending({
        title: `${creating ? 'Create' : 'Save'} ${kind}.${name}`,
        plan,
        confirmLabel: 'Apply',
        apply: async () => {
          try {
            const result = asResult(await get(api.PUT('/api/{kind}/{name}', { params: params(false), body: entity })));
            notifyApplied(`${kind}.${name}`, result);
            onChanged(name);
          } catch (e) {
            showErrors(e);
            throw e;
          }
        },
      });
    } catch (e) {
      showErrors(e);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (item === null) return;
    clearErrors();
    setBusy(true);
    const del = (dryRun: boolean) =>
      api.DELETE('/api/{kind}/{name}', {
        params: { path: { kind, name }, query: dryRun ? { dry_run: true } : {}, header: { 'If-Match': item.etag } },
      });
    try {
      const plan = asPlan(await get(del(true)));
      setPending({
        title: `Delete ${kind}.${name}`,
        plan,
        confirmLabel: 'Delete',
        apply: async () => {
          const result = asResult(await get(del(false)));
          notifyApplied(`${kind}.${name} deleted`, result);
          onChanged(null);
        },
      });
    } catch (e) {
      showErrors(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Paper withBorder p="md" radius="md" component="section" aria-labelledby="entity-form-title">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void review();
        }}
        noValidate
        aria-labelledby="entity-form-title"
      >
        <Stack gap="sm">
          <Title order={2} size="h4" id="entity-form-title">
            {creating ? `New ${SINGULAR[kind]}` : `${SINGULAR[kind]} ${name}`}
          </Title>
          {creating && (
            <TextInput
              label="Name"
              required
              value={newName}
              error={nameError}
              onChange={(e) => {
                setNewName(e.currentTarget.value);
              }}
              description="Letters, digits, _, - and ."
            />
          )}
          <ErrorList title="The API refused this change" errors={otherErrors} />
          <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="sm" verticalSpacing="sm">
            {fields
              .filter((spec) => spec.more !== true)
              .map((spec) => (
                <EntityField key={spec.key} spec={spec} form={form} names={spec.ref !== undefined ? refs[spec.ref] : []} />
              ))}
          </SimpleGrid>
          {jsonFirst && json}
          {moreFields.length + (jsonFirst ? 0 : 1) > 0 && (
            <>
              <Button
                variant="subtle"
                justify="flex-start"
                px={0}
                onClick={() => {
                  setMoreOpen((o) => !o);
                }}
                aria-expanded={moreOpen}
                aria-controls="more-settings"
              >
                {moreOpen ? '▾' : '▸'} More settings
              </Button>
              <Collapse expanded={moreOpen} id="more-settings">
                <Stack gap="sm">
                  <SimpleGrid cols={{ base: 1, lg: 2 }} spacing="sm" verticalSpacing="sm">
                    {moreFields.map((spec) => (
                      <EntityField key={spec.key} spec={spec} form={form} names={spec.ref !== undefined ? refs[spec.ref] : []} />
                    ))}
                  </SimpleGrid>
                  {!jsonFirst && json}
                </Stack>
              </Collapse>
            </>
          )}
          <Group justify="space-between">
            <Group gap="sm">
              <Button type="submit" loading={busy}>
                Review and save
              </Button>
              <Button
                variant="default"
                onClick={() => {
                  form.reset();
                  clearErrors();
                }}
              >
                Reset
              </Button>
            </Group>
            {!creating && (
              <Button color="red" variant="light" onClick={() => void remove()} disabled={busy}>
                Delete…
              </Button>
            )}
          </Group>
        </Stack>
      </form>
      <PlanModal
        pending={pending}
        onClose={() => {
          setPending(null);
        }}
      />
    </Paper>
  );
}

function KindPanel({ kind, name }: { kind: Kind; name: string | undefined }) {
  const [, navigate] = useLocation();
  const [version, setVersion] = useState(0);
  const [creating, setCreating] = useState(false);
  const items = useLoad((signal) => get(api.GET('/api/config/{kind}', { params: { path: { kind } }, signal })), `${kind}:${version}`);
  const config = useLoad((signal) => get(api.GET('/api/config', { signal })), `config:${version}`);

  const refs = useMemo(() => {
    const out = { servers: [], locations: [], upstreams: [], plugins: [], certificates: [] } as Record<Kind, string[]>;
    const c = config.data?.config;
    if (c !== undefined) {
      for (const k of KINDS) {
        const table = c[k];
        if (typeof table === 'object' && table !== null) out[k] = Object.keys(table).sort();
      }
    }
    return out;
  }, [config.data]);

  const selected = name === undefined ? undefined : items.data?.find((i) => i.name === name);

  const changed = (next: string | null) => {
    setCreating(false);
    setVersion((v) => v + 1);
    navigate(next === null ? `/configuration/${kind}` : `/configuration/${kind}/${encodeURIComponent(next)}`);
  };

  return (
    <Group align="flex-start" gap="md" wrap="wrap">
      <Stack gap="xs" w={{ base: '100%', md: 260 }} component="nav" aria-label={LABEL[kind]}>
        <Button
          variant="light"
          onClick={() => {
            setCreating(true);
            navigate(`/configuration/${kind}`);
          }}
        >
          New {SINGULAR[kind]}
        </Button>
        {items.loading && items.data === undefined && <Loader size="sm" aria-label={`Loading ${kind}`} />}
        {items.error !== null && (
          <Alert color="red" role="alert">
            {items.error}
          </Alert>
        )}
        {items.data?.length === 0 && (
          <Text size="sm" c="dimmed">
            No {kind} yet.
          </Text>
        )}
        {items.data?.map((i) => (
          <NavLink
            key={i.name}
            component={Link}
            href={`/configuration/${kind}/${encodeURIComponent(i.name)}`}
            label={i.name}
            description={summary(kind, i.value)}
            active={!creating && i.name === name}
            aria-current={!creating && i.name === name ? 'page' : undefined}
            onClick={() => {
              setCreating(false);
            }}
          />
        ))}
      </Stack>
      <div style={{ flex: '1 1 420px', minWidth: 0 }}>
        {creating ? (
          <EntityForm key={`new-${kind}`} kind={kind} name="" item={null} refs={refs} onChanged={changed} />
        ) : selected !== undefined ? (
          <EntityForm key={`${kind}/${selected.name}/${selected.etag}`} kind={kind} name={selected.name} item={selected} refs={refs} onChanged={changed} />
        ) : name !== undefined && items.data !== undefined ? (
          <Alert color="yellow">
            There is no {SINGULAR[kind]} named “{name}”.
          </Alert>
        ) : (
          <Text c="dimmed">Choose a {SINGULAR[kind]} to edit, or create one.</Text>
        )}
      </div>
    </Group>
  );
}

export function Configuration() {
  const params = useParams<{ kind?: string; name?: string }>();
  const [, navigate] = useLocation();
  const tab = isKind(params.kind) || params.kind === 'toml' ? params.kind : 'locations';
  const name = params.name === undefined ? undefined : decodeURIComponent(params.name);

  return (
    <>
      <PageTitle title="Configuration" />
      <Tabs
        value={tab}
        onChange={(v) => {
          if (v !== null) navigate(`/configuration/${v}`);
        }}
        keepMounted={false}
      >
        <Tabs.List mb="md">
          {KINDS.map((k) => (
            <Tabs.Tab key={k} value={k}>
              {LABEL[k]}
            </Tabs.Tab>
          ))}
          <Tabs.Tab value="toml">Raw TOML</Tabs.Tab>
        </Tabs.List>
        {KINDS.map((k) => (
          <Tabs.Panel key={k} value={k}>
            <KindPanel kind={k} name={tab === k ? name : undefined} />
          </Tabs.Panel>
        ))}
        <Tabs.Panel value="toml">
          <TomlEditor />
        </Tabs.Panel>
      </Tabs>
    </>
  );
}

