// A node:test reporter that writes nothing until the run ends, then every failed test again with
// its error: the TAP reporter prints a failure where it happened, which in a long CI log can be
// far from its end. package.json's test scripts use it beside TAP:
//
//   node --test --test-reporter=tap --test-reporter-destination=stdout \
//               --test-reporter=./scripts/failures-reporter.mjs --test-reporter-destination=stdout

/** The failure's message, and its causes' where they add to it. */
function describe(error) {
  const lines = [];
  for (let e = error, depth = 0; e && depth < 4; e = e.cause, depth += 1) {
    const text = (e instanceof Error ? e.message : String(e)).trim();
    if (text && !lines.includes(text)) lines.push(text);
  }
  return lines.join("\n");
}

export default async function* failuresReporter(source) {
  const failed = [];
  for await (const event of source) {
    // A suite fails with "N subtests failed": its tests are listed already.
    if (event.type === "test:fail" && event.data.details?.error?.failureType !== "subtestsFailed") {
      failed.push(event.data);
    }
  }
  if (failed.length === 0) return;
  yield `\n# ${failed.length} failed, repeated here with their errors:\n`;
  for (const { name, file, details } of failed) {
    const where = file ? ` (${file.replace(process.cwd() + "/", "")})` : "";
    const message = describe(details?.error)
      .split("\n")
      .map((line) => `#     ${line}`.trimEnd())
      .join("\n");
    yield `#   ✖ ${name}${where}\n${message}\n`;
  }
}
