// Node ES module entry: the CommonJS build loads the WebAssembly module synchronously.
export * from "./tapeseal.js";
export * from "./webcrypto.cjs";
