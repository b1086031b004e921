import { Alert, Badge, Loader, Stack, Table, Text, Tooltip } from '@mantine/core';
import { api, get, type CertificateSummary } from '../api/client';
import { asAcmeStatus, expiryColor, expiryLevel, expiryText } from '../lib/certs';
import { formatDateTime, relativeTime } from '../lib/time';
import { useLoad } from '../lib/useLoad';
import { useNow } from '../lib/useNow';
import { PageTitle } from '../components/PageTitle';
import { ColumnHeads } from '../components/ColumnHeads';

function Acme({ c, now }: { c: CertificateSummary }  & { now: number }) {
  const acme = asAcmeStatus(c.acme);
  if (acme === null) {
    return (
      <Text size="sm" c="dimmed">
        {c.source === 'acme' ? 'waiting for status' : '—'}
      </Text>
    );
  }
  const color = acme.last_order === 'failed' ? 'red' : acme.last_order === null || acme.last_order === undefined ? 'gray' : 'green';
  return (
    <Stack gap={2}>
      <Badge color={color} variant="light">
        {acme.last_order ?? 'not ordered yet'}
      </Badge>
      {acme.last_order_at != null && (
        <Text size="xs">last order {relativeTime(Date.parse(acme.last_order_at), now)}</Text>
      )}
      {acme.next_renewal_at != null && (
        <Text size="xs">next renewal {formatDateTime(Date.parse(acme.next_renewal_at))}</Text>
      )}
      {(acme.failures ?? 0) > 0 && (
        <Text size="xs" c="var(--mantine-color-red-light-color)">
          {acme.failures} failed order{acme.failures === 1 ? '' : 's'} in a row
        </Text>
      )}
      {acme.last_error != null && (
        <Text size="xs" c="var(--mantine-color-red-light-color)" lineClamp={3} title={acme.last_error}>
          {acme.last_error}
        </Text>
      )}
      {acme.challenge !== undefined && (
        <Text size="xs" c="dimmed">
          {acme.challenge} · {acme.directory}
        </Text>
      )}
    </Stack>
  );
}

export function Certificates() {
  const { data, error, loading } = useLoad((signal) => get(api.GET('/api/certificates', { signal })), 'certificates', 30_000);
  const now = useNow(1000);
  return (
    <>
      <PageTitle title="Certificates" />
      {error !== null && (
        <Alert color="red" role="alert" mb="md">
          {error}
        </Alert>
      )}
      {loading && data === undefined && <Loader aria-label="Loading certificates" />}
      {data?.length === 0 && <Text c="dimmed">No certificates are served: no server uses HTTPS.</Text>}
      {data !== undefined && data.length > 0 && (
        <Table.ScrollContainer minWidth={900}>
          <Table striped aria-label="Certificates served">
            <ColumnHeads columns={['Name', 'Domains', 'Issuer', 'Expires', 'Source', 'OCSP', 'ACME']} />
            <Table.Tbody>
              {data.map((c) => {
                const pending = c.issuer === '' && c.source === 'acme';
                const level = expiryLevel(c.not_after, now);
                return (
                  <Table.Tr key={`${c.server ?? ''}/${c.name}`} data-testid={`certificate-${c.name}`}>
                    <Table.Th scope="row">
                      <Text fw={600} size="sm">
                        {c.name}
                      </Text>
                      {c.server != null && (
                        <Text size="xs" c="dimmed">
                          own certificate of server {c.server}
                        </Text>
                      )}
                      {c.is_default && (
                        <Badge size="xs" variant="light">
                          default
                        </Badge>
                      )}
                    </Table.Th>
                    <Table.Td className="mono">
                      {c.domains.map((d) => (
                        <div key={d}>{d}</div>
                      ))}
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" lineClamp={2} title={c.issuer}>
                        {pending ? '— (not issued yet)' : c.issuer}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      {pending ? (
                        '—'
                      ) : (
                        <Tooltip label={`valid ${formatDateTime(c.not_before * 1000)} to ${formatDateTime(c.not_after * 1000)}`}>
                          <Stack gap={2}>
                            <Badge color={expiryColor(level)} variant={level === 'ok' ? 'light' : 'filled'}>
                              {expiryText(c.not_after, now)}
                            </Badge>
                            <Text size="xs">{formatDateTime(c.not_after * 1000)}</Text>
                          </Stack>
                        </Tooltip>
                      )}
                    </Table.Td>
                    <Table.Td>{c.source}</Table.Td>
                    <Table.Td>
                      {c.ocsp.stapled ? (
                        <Badge color="green" variant="light">
                          stapled
                        </Badge>
                      ) : (
                        <Text size="sm" c="dimmed">
                          {c.ocsp.responder != null ? 'not stapled' : 'no responder'}
                        </Text>
                      )}
                    </Table.Td>
                    <Table.Td>
                      <Acme c={c} now={now} />
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </>
  );
}
