// The package's TypeScript as a consumer sees it: a small program using every
// public method and option (types/consumer.ts) compiles under strict settings
// (ES2022 + DOM, skipLibCheck off) and with the newest lib plus `using`; and
// every declaration of the .d.ts has a doc comment.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const tsc = fileURLToPath(import.meta.resolve("typescript/bin/tsc"));

function compile(project) {
  try {
    execFileSync(process.execPath, [tsc, "-p", here(project), "--pretty", "false"], { encoding: "utf8" });
  } catch (e) {
    assert.fail(`tsc -p ${project} failed:\n${e.stdout}${e.stderr}`);
  }
}

test("a strict ES2022 consumer compiles against the .d.ts", () => compile("types/tsconfig.json"));

test("the same consumer compiles with lib ESNext, and `using` works", () => compile("types/tsconfig.esnext.json"));

test("every declaration and member of the .d.ts has a doc comment", async () => {
  const path = here("../../pkg/kvcache_wasm.d.ts");
  const source = ts.createSourceFile(path, await readFile(path, "utf8"), ts.ScriptTarget.ES2022, true);
  const missing = [];
  const documented = (node) => ts.getJSDocCommentsAndTags(node).length > 0;
  const name = (node) => node.name?.getText(source) ?? ts.SyntaxKind[node.kind];
  const visit = (node, owner) => {
    const declaration =
      ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) ||
      ts.isFunctionDeclaration(node) || ts.isModuleDeclaration(node);
    const member =
      ts.isMethodDeclaration(node) || ts.isPropertyDeclaration(node) || ts.isGetAccessorDeclaration(node) ||
      ts.isSetAccessorDeclaration(node) || ts.isPropertySignature(node) || ts.isMethodSignature(node) ||
      ts.isConstructorDeclaration(node);
    const isGlobalAugmentation = ts.isModuleDeclaration(node) && node.name.getText(source) === "global";
    if ((declaration && !isGlobalAugmentation) || (member && !ts.isTypeLiteralNode(node.parent))) {
      if (!documented(node)) missing.push(owner ? `${owner}.${name(node)}` : name(node));
    }
    const inner = declaration && !isGlobalAugmentation ? name(node) : owner;
    ts.forEachChild(node, (child) => visit(child, inner));
  };
  visit(source, "");
  assert.deepEqual(missing, [], `undocumented in the .d.ts: ${missing.join(", ")}`);
});
