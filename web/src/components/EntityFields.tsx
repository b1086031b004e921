import { Autocomplete, NumberInput, Select, Switch, TagsInput, Textarea, TextInput } from '@mantine/core';
import type { UseFormReturnType } from '@mantine/form';
import type { FieldSpec, FormValues } from '../lib/entities';

interface Props {
  spec: FieldSpec;
  form: UseFormReturnType<FormValues>;
  /** Names offered by `ref` and `refs` fields. */
  names: readonly string[];
}

/** One field of an entity form, by its type. Lists are one item per line. */
export function EntityField({ spec, form, names }: Props) {
  const props = form.getInputProps(spec.key);
  const common = {
    label: spec.label,
    description: spec.description,
    required: spec.required,
    error: props.error as string | undefined,
    'data-field': spec.key,
  };
  const value = form.values[spec.key];
  switch (spec.type) {
    case 'bool':
      return (
        <Switch
          {...common}
          checked={value === true}
          onChange={(e) => {
            form.setFieldValue(spec.key, e.currentTarget.checked);
          }}
        />
      );
    case 'number':
      return (
        <NumberInput
          {...common}
          value={typeof value === 'number' || typeof value === 'string' ? value : ''}
          onChange={(v) => {
            form.setFieldValue(spec.key, v);
          }}
          allowDecimal={false}
        />
      );
    case 'list':
      return (
        <Textarea
          {...common}
          description={[spec.description, 'One per line'].filter(Boolean).join(' · ')}
          placeholder={spec.placeholder}
          autosize
          minRows={1}
          maxRows={8}
          classNames={{ input: 'mono' }}
          spellCheck={false}
          value={Array.isArray(value) ? value.join('\n') : ''}
          onChange={(e) => {
            form.setFieldValue(spec.key, e.currentTarget.value.split('\n'));
          }}
        />
      );
    case 'refs':
      return (
        <TagsInput
          {...common}
          data={[...names]}
          placeholder={spec.placeholder ?? 'Type or pick a name'}
          value={Array.isArray(value) ? value : []}
          onChange={(v) => {
            form.setFieldValue(spec.key, v);
          }}
          clearable
        />
      );
    case 'ref':
      return (
        <Autocomplete
          {...common}
          data={[...names]}
          placeholder={spec.placeholder ?? 'Type or pick a name'}
          value={typeof value === 'string' ? value : ''}
          onChange={(v) => {
            form.setFieldValue(spec.key, v);
          }}
        />
      );
    case 'select': {
      const current = typeof value === 'string' ? value : '';
      const options = spec.options ?? [];
      return (
        <Select
          {...common}
          data={current !== '' && !options.includes(current) ? [current, ...options] : [...options]}
          placeholder={spec.placeholder ?? 'Default'}
          value={current === '' ? null : current}
          onChange={(v) => {
            form.setFieldValue(spec.key, v ?? '');
          }}
          clearable={spec.required !== true}
        />
      );
    }
    case 'textarea':
      return (
        <Textarea
          {...common}
          placeholder={spec.placeholder}
          autosize
          minRows={1}
          maxRows={10}
          classNames={{ input: 'mono' }}
          spellCheck={false}
          value={typeof value === 'string' ? value : ''}
          onChange={(e) => {
            form.setFieldValue(spec.key, e.currentTarget.value);
          }}
        />
      );
    case 'text':
      return (
        <TextInput
          {...common}
          placeholder={spec.placeholder}
          spellCheck={false}
          value={typeof value === 'string' ? value : ''}
          onChange={(e) => {
            form.setFieldValue(spec.key, e.currentTarget.value);
          }}
        />
      );
  }
}
