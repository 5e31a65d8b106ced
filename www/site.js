// Where this copy of the page finds the real models' files. `npm run build:site` rewrites this file
// in dist/ with the base URL it is given (--models); `?models=URL` in the address overrides it.
// A relative base resolves against the page's own address.
export const MODELS_BASE = "models/";
