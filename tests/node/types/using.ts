// `using` frees the generator at the end of the block (TypeScript 5.2+, lib esnext).
import { Generator } from "kvcache-wasm";

export function countTokens(text: string): number {
  using g = Generator.randomGpt2();
  return g.encode(text).length;
}
