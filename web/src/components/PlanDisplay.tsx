import { Alert, Badge, Code, Collapse, Group, List, Paper, Stack, Table, Text, UnstyledButton } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import type { PlanView } from '../api/client';
import { CHANGE_COLOR, CHANGE_SIGN, IMPACT_COLOR, IMPACT_LABEL, isEmptyPlan, planSummary } from '../lib/plan';
import { ColumnHeads } from './ColumnHeads';

function Value({ v, side }: { v: string | null | undefined; side: 'before' | 'after' }) {
  if (v === null || v === undefined) {
    return (
      <Text span c="dimmed" size="sm" fs="italic">
        not set
      </Text>
    );
  }
  return (
    <Code className={side === 'before' ? 'value-before' : 'value-after'} style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all' }}>
      {v}
    </Code>
  );
}

/** What a change would do: each entity with its keys before and after, the impact, new warnings. */
export function PlanDisplay({ plan }: { plan: PlanView }) {
  const [textOpen, { toggle }] = useDisclosure(false);
  return (
    <Stack gap="sm" data-testid="plan">
      <Text fw={600}>
        {isEmptyPlan(plan) ? 'No changes.' : `Plan: ${planSummary(plan)}.`}
        {plan.upgrade.length > 0 && ' Applied by a graceful upgrade (a new process takes the listening sockets over).'}
      </Text>
      {plan.upgrade.length > 0 && (
        <Alert color="grape" title="Graceful upgrade">
          <List size="sm">
            {plan.upgrade.map((u) => (
              <List.Item key={u}>{u}</List.Item>
            ))}
          </List>
        </Alert>
      )}
      {plan.changes.entries.map((e) => (
        <Paper key={e.entity} withBorder p="xs" radius="sm">
          <Group gap="xs" mb={e.keys.length > 0 || e.impacts.length > 0 ? 'xs' : 0}>
            <Text className="mono" fw={700} c={`var(--mantine-color-${CHANGE_COLOR[e.kind]}-light-color)`} aria-hidden="true">
              {CHANGE_SIGN[e.kind]}
            </Text>
            <Text className="mono" fw={600}>
              {e.entity}
            </Text>
            <Badge color={CHANGE_COLOR[e.kind]} variant="light">
              {e.kind}
            </Badge>
          </Group>
          {e.keys.length > 0 && (
            <Table.ScrollContainer minWidth={360}>
              <Table withRowBorders={false} verticalSpacing={4} aria-label={`Keys of ${e.entity} that change`}>
                <ColumnHeads columns={['Key', 'Before', 'After']} />
                <Table.Tbody>
                  {e.keys.map((k) => (
                    <Table.Tr key={k.key}>
                      <Table.Th scope="row" className="mono" fw={500}>
                        {k.key}
                      </Table.Th>
                      <Table.Td>
                        <Value v={k.before} side="before" />
                      </Table.Td>
                      <Table.Td>
                        <Value v={k.after} side="after" />
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
          )}
          {e.impacts.length > 0 && (
            <List size="sm" spacing={2} mt={4}>
              {e.impacts.map((i) => (
                <List.Item key={i.message}>
                  <Badge size="xs" color={IMPACT_COLOR[i.kind]} variant="light" mr={6}>
                    {IMPACT_LABEL[i.kind]}
                  </Badge>
                  {i.message}
                </List.Item>
              ))}
            </List>
          )}
        </Paper>
      ))}
      {plan.changes.new_warnings.length > 0 && (
        <Alert color="yellow" title="New warnings">
          <List size="sm">
            {plan.changes.new_warnings.map((w) => (
              <List.Item key={w}>{w}</List.Item>
            ))}
          </List>
        </Alert>
      )}
      <UnstyledButton onClick={toggle} aria-expanded={textOpen} fz="sm" c="dimmed">
        {textOpen ? '▾' : '▸'} The plan as text
      </UnstyledButton>
      <Collapse expanded={textOpen}>
        <Code block>{plan.text}</Code>
      </Collapse>
    </Stack>
  );
}
