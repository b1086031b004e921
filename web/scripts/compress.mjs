// Writes a gzip'd copy (`NAME.gz`, zlib level 9) next to every file in dist/ larger than 1 KiB,
// prints the total size the browser downloads (the .gz where there is one, else the file), and
// fails when it exceeds the budget. The output is deterministic: Node's gzip header carries no
// file name and a zero mtime, and files are visited in sorted order.
import { gzipSync, constants } from 'node:zlib';
import { readdirSync, readFileSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUDGET = 400 * 1024;
const MIN_SIZE = 1024;
const dist = fileURLToPath(new URL('../dist', import.meta.url));

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      return entry.isDirectory() ? walk(path) : [path];
    });
}

// .gz files left over from an earlier run (vite empties dist/, but be safe when run alone).
for (const file of walk(dist)) if (file.endsWith('.gz')) unlinkSync(file);

let total = 0;
const rows = [];
for (const file of walk(dist)) {
  const size = statSync(file).size;
  let served = size;
  if (size > MIN_SIZE) {
    const gz = gzipSync(readFileSync(file), { level: constants.Z_BEST_COMPRESSION });
    writeFileSync(`${file}.gz`, gz);
    served = gz.length;
  }
  total += served;
  rows.push([relative(dist, file), size, served]);
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
for (const [name, size, served] of rows) {
  console.log(`  ${name.padEnd(40)} ${kib(size).padStart(11)} ${kib(served).padStart(11)} gz`);
}
console.log(`total gzip'd size: ${kib(total)} (budget ${kib(BUDGET)})`);
if (total > BUDGET) {
  console.error(`error: the gzip'd bundle is ${kib(total)}, over the ${kib(BUDGET)} budget`);
  process.exit(1);
}
