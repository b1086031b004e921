// The head row of a data table: one column header (`scope="col"`) per column, numeric columns
// right-aligned like their cells.
import { Table } from '@mantine/core';
import type { ReactNode } from 'react';

/** A column: its label, or the label with a key and alignment when it is not plain text. */
export type Column = string | { key: string; label: ReactNode; numeric?: boolean };

export function ColumnHeads({ columns }: { columns: readonly Column[] }) {
  return (
    <Table.Thead>
      <Table.Tr>
        {columns.map((column) =>
          typeof column === 'string' ? (
            <Table.Th key={column} scope="col">
              {column}
            </Table.Th>
          ) : (
            <Table.Th key={column.key} scope="col" ta={column.numeric === true ? 'right' : undefined}>
              {column.label}
            </Table.Th>
          ),
        )}
      </Table.Tr>
    </Table.Thead>
  );
}

/** A right-aligned column whose label is its text. */
export function numeric(label: string): Column {
  return { key: label, label, numeric: true };
}
