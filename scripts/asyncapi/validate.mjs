// Validate an AsyncAPI document with the official parser (@asyncapi/parser): the AsyncAPI 3 JSON
// Schema plus the parser's semantic rules (references resolve, operation messages belong to their
// channel, ...). Prints one line per diagnostic; exits 0 when there is no error, 1 otherwise, 2 on misuse.
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs FILE');
  process.exit(2);
}
const severities = ['error', 'warning', 'info', 'hint'];
const { document, diagnostics } = await new Parser().parse(readFileSync(file, 'utf8'), { source: file });
for (const d of diagnostics) {
  console.log(`${severities[d.severity]} ${d.code} ${d.path.join('.')}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === 0);
process.exit(document !== undefined && errors.length === 0 ? 0 : 1);
