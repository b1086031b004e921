import { Anchor, Text } from '@mantine/core';
import { Link } from 'wouter';
import { PageTitle } from '../components/PageTitle';

export function NotFound() {
  return (
    <>
      <PageTitle title="Not found" />
      <Text>
        The dashboard has no page here.{' '}
        <Anchor component={Link} href="/">
          Go to the overview
        </Anchor>
        .
      </Text>
    </>
  );
}
