import { useEffect } from 'react';
import { Center, Loader, Stack } from '@mantine/core';
import { api } from './api/client';
import { connection, useConnection } from './lib/connection';
import { ConnectionBanner } from './components/ConnectionBanner';
import { SignIn } from './pages/SignIn';
import { Shell } from './Shell';

/** Asks the API who is signed in: the session cookie is HttpOnly, so only the API knows. */
async function checkSession(): Promise<void> {
  try {
    const { data, response } = await api.GET('/api/session');
    if (data !== undefined) connection.signedIn(data.user);
    else if (response.status === 401) connection.signedOut();
  } catch {
    // unreachable: the banner says so, and the check runs again once the API answers
  }
}

export function App() {
  const { auth, unreachable } = useConnection();

  useEffect(() => {
    void checkSession();
  }, []);

  // While the API is unreachable, knock every few seconds; the first answer clears the banner.
  useEffect(() => {
    if (!unreachable) return;
    const timer = setInterval(() => {
      void api.GET('/health', { parseAs: 'text' }).then(
        ({ response }) => {
          if (response.ok && connection.get().auth === 'checking') void checkSession();
        },
        () => undefined,
      );
    }, 3000);
    return () => {
      clearInterval(timer);
    };
  }, [unreachable]);

  if (auth === 'signed-in') return <Shell />;
  if (auth === 'checking') {
    return (
      <Stack p="md">
        <ConnectionBanner />
        <Center h="60vh">
          <Loader aria-label="Checking the session" />
        </Center>
      </Stack>
    );
  }
  return <SignIn expired={auth === 'expired'} />;
}
