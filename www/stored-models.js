// The models kept in this browser: Generator.load stores every file it downloads in one Cache API
// store, so the next visit loads them without the network. Here they are listed, one entry per
// model (a .gguf file, or the files of one Hugging Face folder) with its size, and deleted.

/** Generator.load's Cache API store (the package's BROWSER_CACHE_NAME). */
export const STORE = "kvcache-wasm-models-v1";

/** Whether this page can reach the Cache API (it needs a secure context: https or localhost). */
export const canStore = () => typeof caches !== "undefined";

const modelOf = (url) => (/\.gguf$/i.test(new URL(url).pathname) ? url : url.slice(0, url.lastIndexOf("/") + 1));

/** The stored models, by URL: [{ url, name, bytes, files }], largest first. */
export async function storedModels() {
  if (!canStore()) return [];
  const cache = await caches.open(STORE);
  const models = new Map();
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    if (!response) continue;
    const length = Number(response.headers.get("content-length"));
    const bytes = Number.isFinite(length) && length > 0 ? length : (await response.blob()).size;
    const url = modelOf(request.url);
    const model = models.get(url) ?? { url, name: nameOf(url), bytes: 0, files: [] };
    model.bytes += bytes;
    model.files.push(request.url);
    models.set(url, model);
  }
  return [...models.values()].sort((a, b) => b.bytes - a.bytes);
}

function nameOf(url) {
  const { pathname, host } = new URL(url);
  const parts = pathname.split("/").filter(Boolean);
  const name = pathname.endsWith("/") ? `${parts.at(-1) ?? host}/` : parts.at(-1);
  return host === location.host ? name : `${name} (${host})`;
}

/** Deletes every file of a stored model. */
export async function forgetModel(model) {
  const cache = await caches.open(STORE);
  for (const file of model.files) await cache.delete(file);
}

/** What this site may store and has stored, where the browser tells: { usage, quota } in bytes. */
export async function storageEstimate() {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    return Number.isFinite(usage) && Number.isFinite(quota) ? { usage, quota } : null;
  } catch {
    return null;
  }
}
