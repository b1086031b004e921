import { useEffect } from 'react';
import { AppShell, Badge, Burger, Button, Group, NavLink, ScrollArea, Text, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { Link, Route, Switch, useLocation } from 'wouter';
import { api, get } from './api/client';
import { connection, useConnection } from './lib/connection';
import { statsStore } from './lib/liveStats';
import { useEventSource } from './lib/useEventSource';
import { useLoad } from './lib/useLoad';
import { APPLIED_EVENT } from './lib/notify';
import { ConnectionBanner } from './components/ConnectionBanner';
import { Overview } from './pages/Overview';
import { Upstreams } from './pages/Upstreams';
import { Configuration } from './pages/Configuration';
import { History } from './pages/History';
import { Certificates } from './pages/Certificates';
import { Logs } from './pages/Logs';
import { Explain } from './pages/Explain';
import { NotFound } from './pages/NotFound';
import type { StatsFrame } from './api/client';

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/upstreams', label: 'Upstreams' },
  { href: '/configuration', label: 'Configuration' },
  { href: '/history', label: 'History' },
  { href: '/certificates', label: 'Certificates' },
  { href: '/logs', label: 'Logs' },
  { href: '/explain', label: 'Explain' },
] as const;

function isActive(location: string, href: string): boolean {
  return href === '/' ? location === '/' : location === href || location.startsWith(`${href}/`);
}

/** Feeds the statistics of the whole session from the stream. */
function StatsFeed() {
  useEventSource('/api/stats/stream', {
    stats: (data) => {
      statsStore.push(JSON.parse(data) as StatsFrame);
    },
  });
  return null;
}

export async function signOut(): Promise<void> {
  // Leave the signed-in views first, so their streams close before the session ends.
  connection.signedOut();
  statsStore.clear();
  try {
    await api.POST('/api/logout');
  } catch {
    // the session ends on the server by itself
  }
}

export function Shell() {
  const [opened, { toggle, close }] = useDisclosure(false);
  const [location] = useLocation();
  const { user } = useConnection();
  const status = useLoad((signal) => get(api.GET('/api/status', { signal })), 'status', 10_000);

  useEffect(() => {
    close();
  }, [location, close]);

  const reloadStatus = status.reload;
  useEffect(() => {
    window.addEventListener(APPLIED_EVENT, reloadStatus);
    return () => {
      window.removeEventListener(APPLIED_EVENT, reloadStatus);
    };
  }, [reloadStatus]);

  return (
    <AppShell
      header={{ height: 56 }}
      navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <StatsFeed />
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger
              opened={opened}
              onClick={toggle}
              hiddenFrom="sm"
              size="sm"
              aria-label={opened ? 'Close navigation' : 'Open navigation'}
              aria-expanded={opened}
              aria-controls="main-nav"
            />
            <Title order={2} size="h4">
              pingap
            </Title>
            {status.data !== undefined && (
              <Badge variant="light" visibleFrom="xs" title={`configuration digest ${status.data.config.digest}`}>
                v{status.data.version} · config {status.data.config.version ?? '?'}
              </Badge>
            )}
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Text size="sm" visibleFrom="sm" c="dimmed">
              {user}
            </Text>
            <Button variant="default" size="xs" onClick={() => void signOut()}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" id="main-nav" aria-label="Main">
        <AppShell.Section grow component={ScrollArea}>
          {NAV.map((item) => (
            <NavLink
              key={item.href}
              component={Link}
              href={item.href}
              label={item.label}
              active={isActive(location, item.href)}
              aria-current={isActive(location, item.href) ? 'page' : undefined}
            />
          ))}
        </AppShell.Section>
      </AppShell.Navbar>
      <AppShell.Main id="main" tabIndex={-1}>
        <ConnectionBanner />
        <Switch>
          <Route path="/" component={Overview} />
          <Route path="/upstreams" component={Upstreams} />
          <Route path="/configuration" component={Configuration} />
          <Route path="/configuration/:kind" component={Configuration} />
          <Route path="/configuration/:kind/:name" component={Configuration} />
          <Route path="/history" component={History} />
          <Route path="/certificates" component={Certificates} />
          <Route path="/logs" component={Logs} />
          <Route path="/explain" component={Explain} />
          <Route component={NotFound} />
        </Switch>
      </AppShell.Main>
    </AppShell>
  );
}
