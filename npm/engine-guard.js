
// ---- engine guard (npm/engine-guard.js, appended to the generated glue by scripts/finish-pkg.mjs,
// so that it reaches the glue's module state: __wbg_reset_state, __wbg_instance_id, handleError) ----
//
// Every method, getter and setter of the exported classes goes through `guarded`:
// - A crash never leaves a silently poisoned module. A Rust panic (which the panic hook of
//   src/wasm/crash.rs turns into an Error starting with ENGINE_CRASHED) or a trap
//   (WebAssembly.RuntimeError: out of memory, ...; RangeError: stack overflow) leaves the wasm
//   instance unusable. The call that crashed throws `the engine crashed: create a new one (...)`,
//   the instance is replaced at once by a fresh one (same module, new memory), every object of
//   the crashed instance throws the same message from then on, and objects created afterwards
//   (Generator.fromGguf, Generator.load, ...) work as on a fresh page. An error thrown by the
//   caller's own callbacks (onToken, onProgress) is no crash, whatever its type: it is rethrown
//   as it is, and every generator keeps working.
// - A call on an object that is already inside a call (from `onToken` or `onProgress`) throws
//   a clear Error instead of reaching wasm-bindgen's borrow check.
// - A call on a freed object (or one made with `new`) throws a clear Error instead of
//   wasm-bindgen's "null pointer passed to rust"; free() on it again is a no-op, as `using`
//   after a manual free() needs.

const ENGINE_CRASHED = "the engine crashed: create a new one";
let __kvcache_crash = null; // the message of the last crash
const __kvcache_busy = new WeakMap(); // object -> the name of the call in progress on it
// Errors thrown by JS that wasm called (the caller's onToken or onProgress, fetch, ...). wasm
// caught each at its boundary (the glue's `handleError`) and passed it back unchanged, so the
// instance is intact: such an error is the caller's, even a RangeError, never a crash.
const __kvcache_thrown_by_js = new WeakSet();
const __kvcache_handle_error = handleError;
handleError = function (f, args) {
  const noting = function (...inner) {
    try {
      return f.apply(this, inner);
    } catch (error) {
      if (error !== null && (typeof error === "object" || typeof error === "function")) __kvcache_thrown_by_js.add(error);
      throw error;
    }
  };
  return __kvcache_handle_error.call(this, noting, args);
};

function __kvcache_crashed(error) {
  const message = String(error?.message ?? error);
  if (__kvcache_thrown_by_js.has(error) && !message.startsWith(ENGINE_CRASHED)) return error;
  const crashed =
    error instanceof WebAssembly.RuntimeError ||
    error instanceof RangeError ||
    message.startsWith(ENGINE_CRASHED);
  if (!crashed) return error;
  const detail = message.startsWith(ENGINE_CRASHED) ? message.slice(ENGINE_CRASHED.length).trim() : `(${message})`;
  __kvcache_crash = detail;
  __wbg_reset_state();
  return new Error(`${ENGINE_CRASHED} ${detail}`.trim(), { cause: error });
}

// `releases`: the method is free() or [Symbol.dispose]().
function __kvcache_guarded(className, name, original, releases) {
  const wrapped = function (...args) {
    const label = `${className}.${name}`;
    if (this !== undefined && typeof this === "object") {
      if (this.__wbg_inst !== undefined && this.__wbg_inst !== __wbg_instance_id) {
        if (releases) return undefined;
        throw new Error(
          `${ENGINE_CRASHED}: this ${className} belonged to the engine that crashed ${__kvcache_crash ?? ""}`.trim(),
        );
      }
      // 0 once freed (free(), the end of a `using` block); undefined for an object made with `new`.
      if (!this.__wbg_ptr) {
        if (releases) return undefined;
        throw new Error(
          `${label}: this ${className} has been freed (by free() or at the end of a \`using\` block), ` +
            `or was made with \`new\` instead of one of ${className}'s static methods`,
        );
      }
      const running = __kvcache_busy.get(this);
      if (running !== undefined) {
        throw new Error(
          `${label}: this ${className} is busy in ${running} (a call from its onToken or onProgress callback); ` +
            `use the token passed to the callback, or call it after ${running} returns`,
        );
      }
    }
    const owner = this !== undefined && typeof this === "object" ? this : undefined;
    if (owner) __kvcache_busy.set(owner, `${name}()`);
    let result;
    try {
      result = original.apply(this, args);
    } catch (error) {
      throw __kvcache_crashed(error);
    } finally {
      if (owner) __kvcache_busy.delete(owner);
    }
    if (result instanceof Promise) {
      return result.catch((error) => {
        throw __kvcache_crashed(error);
      });
    }
    return result;
  };
  Object.defineProperty(wrapped, "name", { value: original.name });
  return wrapped;
}

function __kvcache_guard(Class) {
  for (const target of [Class, Class.prototype]) {
    for (const key of Reflect.ownKeys(target)) {
      // Skip the glue's own helpers (__wrap, __destroy_into_raw, ...), which the methods call.
      if (typeof key === "string" && (key.startsWith("__") || ["constructor", "prototype", "length", "name"].includes(key))) {
        continue;
      }
      const descriptor = Object.getOwnPropertyDescriptor(target, key);
      const name = typeof key === "symbol" ? `[${key.description}]` : key;
      for (const part of ["value", "get", "set"]) {
        if (typeof descriptor[part] === "function") {
          const releases = key === "free" || key === Symbol.dispose;
          descriptor[part] = __kvcache_guarded(Class.name, name, descriptor[part], releases);
        }
      }
      Object.defineProperty(target, key, descriptor);
    }
  }
}
