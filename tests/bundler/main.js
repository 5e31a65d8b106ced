// The bundler check (`npm run test:bundler`): a page that imports the package
// by name; `vite build` must resolve it through package.json `exports` and
// emit the .wasm as an asset.
import init, { Generator } from "kvcache-wasm";

await init();
const g = Generator.randomGpt2({ cache: "prealloc", maxSeqLen: 64 });
const r = g.generate("Hello", { maxTokens: 4 });
document.body.textContent = `${r.text} (${r.tokensPerSec.toFixed(1)} tokens/s, cache ${g.cacheBytes} bytes)`;
