// Browser and bundler entry: loads the WebAssembly module once, then exports the API:
// the synchronous one and the WebCrypto path.
import init from "./tapeseal.js";

await init();

export * from "./tapeseal.js";
export * from "./webcrypto.js";
