import { useState } from 'react';
import { Alert, Button, Center, Paper, PasswordInput, Stack, TextInput, Title } from '@mantine/core';
import { useForm } from '@mantine/form';
import { api } from '../api/client';
import { connection } from '../lib/connection';
import { ConnectionBanner } from '../components/ConnectionBanner';

export function SignIn({ expired }: { expired: boolean }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useForm({
    initialValues: { user: '', password: '' },
    validate: {
      user: (v) => (v.trim() === '' ? 'Enter your user name' : null),
      password: (v) => (v === '' ? 'Enter your password' : null),
    },
  });

  const submit = form.onSubmit(async (values) => {
    setBusy(true);
    setError(null);
    try {
      const { data, error: body, response } = await api.POST('/api/login', { body: values });
      if (data !== undefined) {
        connection.signedIn(data.user);
        return;
      }
      if (response.status === 401) setError('Wrong user name or password.');
      else if (response.status === 429) {
        const wait = response.headers.get('Retry-After');
        setError(`Too many failed sign-ins from this address: try again${wait !== null ? ` in ${wait} s` : ' later'}.`);
      } else setError(body.error);
    } catch {
      setError('The API is unreachable.');
    } finally {
      setBusy(false);
    }
  });

  return (
    <Center mih="100vh" p="md" component="main">
      <Stack w="100%" maw={380}>
        <ConnectionBanner />
        <Paper withBorder shadow="sm" p="lg" radius="md">
          <form onSubmit={submit} noValidate>
            <Stack>
              <Title order={1} size="h2">
                Sign in to pingap
              </Title>
              {expired && (
                <Alert color="yellow" title="Session expired" role="alert" data-testid="session-expired">
                  Your session has ended. Sign in again to go on.
                </Alert>
              )}
              {error !== null && (
                <Alert color="red" role="alert">
                  {error}
                </Alert>
              )}
              <TextInput label="User" autoComplete="username" required autoFocus {...form.getInputProps('user')} />
              <PasswordInput label="Password" autoComplete="current-password" required {...form.getInputProps('password')} />
              <Button type="submit" loading={busy}>
                Sign in
              </Button>
            </Stack>
          </form>
        </Paper>
      </Stack>
    </Center>
  );
}
